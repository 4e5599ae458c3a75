package tap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// VnetTAP is a TAP device opened with IFF_VNET_HDR and offloads on
// (offload = true): every frame is preceded by a virtio-net header, and the
// kernel on the device's side hands it TCP super-frames of up to 64 KiB
// with partial checksums, and takes the same. The device is not persistent,
// like TAP.
//
// Opened with several queues (OpenVnetTAPQueues, IFF_MULTI_QUEUE) it has a
// descriptor per queue, each read by one poll loop (Queues). The kernel
// hands a flow's frames to the queue that last wrote that flow in (tun's
// flow steering), so WriteFrame writes a frame on the queue numbered by
// its Offload.Queue (the loop that read it): a flow's replies then come
// back to the loop that carried it.
type VnetTAP struct {
	d    *desc // queue 0's descriptor
	name string
	rd   msgReader   // queue 0's read state (ReadFrame, TryReadFrame)
	qs   []*TAPQueue // every queue, qs[0] being d
	pq   []Polled    // qs as Polled (Queues)
}

// TAPQueue is one queue of a VnetTAP, read by one poll loop: its reads are
// the queue's own, its writes and Close the device's.
type TAPQueue struct {
	t  *VnetTAP
	d  *desc
	rd *msgReader
}

// tapOffloads are the offloads a VnetTAP asks for: checksums, TSO for IPv4
// and IPv6 (with ECN), and UDP segmentation where the kernel has it (6.2+).
const (
	tapOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tapUSO      = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// OpenVnetTAP creates a TAP device called name with vnet headers and
// offloads in the calling thread's network namespace. The descriptor is
// non-blocking and managed by the Go netpoller, so Close unblocks a
// pending ReadFrame; polled leaves it out of the netpoller for a poll
// thread (Polled).
func OpenVnetTAP(name string, polled bool) (*VnetTAP, error) {
	return OpenVnetTAPQueues(name, polled, 1)
}

// OpenVnetTAPQueues is OpenVnetTAP with queues queues: more than one makes
// a multi-queue device (IFF_MULTI_QUEUE) with a descriptor per queue. An
// existing (persistent) device is attached as it was made: a single-queue
// one left by an older run gets one queue whatever queues says, and a
// multi-queue one stays multi-queue (the kernel refuses to attach a
// descriptor of the other kind).
func OpenVnetTAPQueues(name string, polled bool, queues int) (*VnetTAP, error) {
	if len(name) == 0 || len(name) > 15 {
		return nil, fmt.Errorf("open TAP %q: interface names are 1 to 15 bytes", name)
	}
	multi := queues > 1
	d, err := openTAPQueue(name, polled, multi)
	if errors.Is(err, unix.EINVAL) {
		// The device exists with the other queueing.
		multi = !multi
		d, err = openTAPQueue(name, polled, multi)
	}
	if err != nil {
		return nil, err
	}
	t := &VnetTAP{d: d, name: name}
	t.rd.init(true, false)
	t.qs = []*TAPQueue{{t: t, d: d, rd: &t.rd}}
	for multi && len(t.qs) < queues {
		d, err := openTAPQueue(name, polled, true)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("%w (queue %d)", err, len(t.qs))
		}
		q := &TAPQueue{t: t, d: d, rd: &msgReader{}}
		q.rd.init(true, false)
		t.qs = append(t.qs, q)
	}
	for _, q := range t.qs {
		t.pq = append(t.pq, q)
	}
	return t, nil
}

// openTAPQueue opens one descriptor of TAP name, creating the device if
// it does not exist, with vnet headers and offloads.
func openTAPQueue(name string, polled, multi bool) (*desc, error) {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open %s: no such device (load the tun module; uswitch run needs root)", tunPath)
		}
		return nil, fmt.Errorf("open %s: %w (uswitch run needs root)", tunPath, err)
	}
	fail := func(what string, err error) (*desc, error) {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("open %s: TAP %q: %s: %w (uswitch run needs root)", tunPath, name, what, err)
		}
		return nil, fmt.Errorf("open %s: TAP %q: %s: %w", tunPath, name, what, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("name", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, packet.VnetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tapOffloads|tapUSO); err != nil {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tapOffloads); err != nil {
			return fail("TUNSETOFFLOAD", err)
		}
	}
	d, err := newDesc(fd, "tap:"+name, polled)
	if err != nil {
		return nil, fmt.Errorf("TAP %s: %w", name, err)
	}
	return d, nil
}

// Queues implements MultiQueue: one Polled per queue, queue 0 first (a
// single-queue device has one).
func (t *VnetTAP) Queues() []Polled { return t.pq }

// Name returns the name the device was created with.
func (t *VnetTAP) Name() string { return t.name }

// ReadFrame implements Port: it blocks until the kernel hands the TAP a
// frame, and returns it with what its vnet header says. After Close it
// returns ErrClosed.
func (t *VnetTAP) ReadFrame(b []byte) (int, packet.Offload, error) {
	n, off, _, err := t.read(b, true)
	return n, off, err
}

// TryReadFrame implements Polled.
func (t *VnetTAP) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	return t.read(b, false)
}

// Fd implements Polled.
func (t *VnetTAP) Fd() int { return t.d.fd }

func (t *VnetTAP) read(b []byte, block bool) (int, packet.Offload, bool, error) {
	return t.qs[0].read(b, block)
}

// WriteFrame implements Port: frame and its vnet header go to the kernel in
// one writev, super-frames unsegmented, on the queue off.Queue (queue 0
// when the device has fewer).
func (t *VnetTAP) WriteFrame(frame []byte, off packet.Offload) error {
	d := t.d
	if q := int(off.Queue); q < len(t.qs) {
		d = t.qs[q].d
	}
	if d.closed.Load() {
		return ErrClosed
	}
	if err := writeFrame(d, frame, off, true); err != nil {
		return d.fail("TAP", t.name, "write", err)
	}
	return nil
}

// Close implements Port: it closes every queue. The (non-persistent)
// device goes away with them.
func (t *VnetTAP) Close() error {
	var errs []error
	for _, q := range t.qs {
		if err := q.d.close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("TAP %s: close: %w", t.name, err)
	}
	return nil
}

// Fd implements Polled: the queue's descriptor.
func (q *TAPQueue) Fd() int { return q.d.fd }

// TryReadFrame implements Polled: a frame of this queue.
func (q *TAPQueue) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	return q.read(b, false)
}

// ReadFrame implements Port: it blocks until a frame comes on this queue.
func (q *TAPQueue) ReadFrame(b []byte) (int, packet.Offload, error) {
	n, off, _, err := q.read(b, true)
	return n, off, err
}

// WriteFrame implements Port: the device's (on the queue off.Queue).
func (q *TAPQueue) WriteFrame(frame []byte, off packet.Offload) error {
	return q.t.WriteFrame(frame, off)
}

// Close implements Port: it closes the whole device.
func (q *TAPQueue) Close() error { return q.t.Close() }

func (q *TAPQueue) read(b []byte, block bool) (int, packet.Offload, bool, error) {
	n, off, ok, err := q.rd.read(q.d, b, block)
	if err != nil {
		return 0, off, false, q.d.fail("TAP", q.t.name, "read", err)
	}
	return n, off, ok, nil
}

// msgReader is the read state of a descriptor, reused by its single reader
// so that a read allocates nothing: one read into the caller's buffer,
// preceded by an iovec for the vnet header when the descriptor has one. A
// socket (sock) reads with recvmsg, with room for PACKET_AUXDATA; a TAP
// with readv.
type msgReader struct {
	vnet bool
	sock bool
	hdr  [packet.VnetHdrLen]byte
	iov  [2]unix.Iovec
	msg  unix.Msghdr
	oob  [64]byte
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func (r *msgReader) init(vnet, sock bool) {
	r.vnet, r.sock = vnet, sock
	r.iov[0].Base = &r.hdr[0]
	r.iov[0].SetLen(packet.VnetHdrLen)
	r.msg.Iov = &r.iov[0]
	r.msg.SetIovlen(2)
	if !vnet {
		r.msg.Iov = &r.iov[1]
		r.msg.SetIovlen(1)
	}
	if sock {
		r.msg.Control = &r.oob[0]
	}
	r.fn = r.recv
}

// read reads one frame from d into b and returns its length and offloads;
// without block, ok is false when no frame was waiting (d is polled).
func (r *msgReader) read(d *desc, b []byte, block bool) (n int, off packet.Offload, ok bool, err error) {
	if len(b) == 0 {
		return 0, packet.Offload{}, false, errors.New("empty buffer")
	}
	r.iov[1].Base = &b[0]
	r.iov[1].SetLen(len(b))
	ok = true
	if block {
		err = d.call(r.fn, false)
	} else {
		ok, err = d.try(r.fn)
	}
	r.iov[1].Base = nil // keep no reference to the caller's buffer
	if err == nil {
		err = r.err
	}
	if err != nil || !ok {
		return 0, packet.Offload{}, false, err
	}
	return r.result(b)
}

// recvFd is read's raw step on its own, made by a caller that holds the
// descriptor fd (a raw call's fn): ok is false when no frame was waiting.
func (r *msgReader) recvFd(fd uintptr, b []byte) (n int, off packet.Offload, ok bool, err error) {
	r.iov[1].Base = &b[0]
	r.iov[1].SetLen(len(b))
	ok = r.recv(fd)
	r.iov[1].Base = nil
	if r.err != nil || !ok {
		return 0, packet.Offload{}, false, r.err
	}
	return r.result(b)
}

// result returns the length and offloads of the frame just read into b.
func (r *msgReader) result(b []byte) (n int, off packet.Offload, ok bool, err error) {
	if !r.vnet {
		return min(r.n, len(b)), packet.Offload{}, true, nil
	}
	if r.n < packet.VnetHdrLen {
		return 0, packet.Offload{}, false, shortVnet(r.n)
	}
	return min(r.n-packet.VnetHdrLen, len(b)), packet.DecodeVnetHdr(r.hdr[:]), true, nil
}

// recv is the raw read; false means "wait and retry".
// The descriptor is non-blocking, so the read returns at once: it is made
// as a raw system call, which keeps the goroutine's P instead of handing it
// off and winning it back (measured: 7% more TCP throughput).
func (r *msgReader) recv(fd uintptr) bool {
	var done bool
	if r.sock {
		r.msg.SetControllen(auxSpace)
		r.n, done, r.err = rawCall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
	} else {
		r.n, done, r.err = rawCall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(r.msg.Iov)), uintptr(r.msg.Iovlen))
	}
	return done
}

// rawCall makes a system call on a non-blocking descriptor for the
// netpoller: retried on EINTR, not done on EAGAIN (wait and retry), else
// its result or error.
func rawCall(trap, a1, a2, a3 uintptr) (n int, done bool, err error) {
	for {
		r, _, e := unix.RawSyscall(trap, a1, a2, a3)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, false, nil
		case 0:
			return int(r), true, nil
		}
		return 0, true, e
	}
}

// control returns the control messages of the last read.
func (r *msgReader) control() []byte { return r.oob[:r.msg.Controllen] }

// frameWrite is one writev of a frame, preceded by a vnet header when the
// descriptor has one. Writers take one from a pool, so any number may write
// at once without allocating.
type frameWrite struct {
	hdr  [packet.VnetHdrLen]byte
	iov  [2]unix.Iovec
	vnet bool
	err  error
	fn   func(fd uintptr) bool
}

var frameWrites = sync.Pool{New: func() any {
	w := &frameWrite{}
	w.iov[0].Base = &w.hdr[0]
	w.iov[0].SetLen(packet.VnetHdrLen)
	w.fn = w.send
	return w
}}

// writeFrame writes frame to d, preceded by off as a vnet header when vnet
// is set.
func writeFrame(d *desc, frame []byte, off packet.Offload, vnet bool) error {
	if len(frame) == 0 {
		return errors.New("empty frame")
	}
	w := frameWrites.Get().(*frameWrite)
	w.vnet = vnet
	if vnet {
		off.PutVnetHdr(w.hdr[:])
	}
	w.iov[1].Base = &frame[0]
	w.iov[1].SetLen(len(frame))
	err := d.call(w.fn, true)
	if err == nil {
		err = w.err
	}
	w.iov[1].Base = nil
	frameWrites.Put(w)
	return err
}

// send is the raw write. A TAP or packet socket write never blocks (a full
// queue drops), so it is a raw system call that keeps the goroutine's P.
func (w *frameWrite) send(fd uintptr) bool {
	var done bool
	if w.vnet {
		_, done, w.err = rawCall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), 2)
	} else {
		_, done, w.err = rawCall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[1])), 1)
	}
	return done
}
