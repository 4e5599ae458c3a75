// Package uring owns io_uring for uswitch's poll loops: a ring set up from
// raw system calls (io_uring_setup, io_uring_enter, io_uring_register; no
// cgo, no library), its submission and completion queues and SQEs mapped
// into the process, and one provided-buffer ring from which the kernel
// picks the buffer of every multishot read. A poll loop arms one multishot
// read per descriptor (ReadMultishot); each io_uring_enter then performs,
// in the loop's own thread, every read that has data waiting, and the loop
// takes the frames from the completion queue (Next), handing each buffer
// back (Release) once the frame has been carried.
//
// A Ring belongs to the OS thread that created it (IORING_SETUP_SINGLE_ISSUER
// with IORING_SETUP_DEFER_TASKRUN): create it, submit and enter from one
// goroutine locked to its thread. New fails when the kernel lacks what the
// ring needs (6.7 for multishot reads); callers then keep their epoll path.
// Nothing the kernel writes into a completion can make it panic: buffer ids
// and lengths are checked, unknown user data is the caller's to ignore.
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config sizes a Ring.
type Config struct {
	Entries   uint32 // submission queue entries (a power of 2)
	CQEntries uint32 // completion queue entries (a power of 2, >= Entries)
	Buffers   uint32 // provided buffers (a power of 2, at most 32768)
	BufSize   int    // bytes each
}

// Ring is one io_uring with its provided-buffer ring (buffer group 0).
type Ring struct {
	fd       int
	ringMem  []byte // SQ and CQ rings (one mapping with IORING_FEAT_SINGLE_MMAP)
	cqMem    []byte // the CQ ring when mapped apart
	sqeMem   []byte
	sqHead   *uint32
	sqTailP  *uint32
	sqFlags  *uint32
	sqArray  []uint32 // nil with IORING_SETUP_NO_SQARRAY
	sqes     []sqe
	sqMask   uint32
	sqTail   uint32 // ours, published at Enter
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     []cqe
	bufRing  []buf // the provided-buffer ring's entries
	ringTail *uint32
	bufMask  uint32
	bufTail  uint16
	bufMem   []byte
	stride   int
	bufSize  int
	given    []bool // buffer id: in the kernel's ring (not yet handed out)
	closed   bool
}

// ErrUnsupported wraps the reason New cannot set up a ring on this kernel.
var ErrUnsupported = errors.New("io_uring unsupported")

// Completion is one completion queue entry. Data is the bytes a read put
// in its buffer, valid until Release; nil when the completion carries no
// buffer (an error, end of file, a poll or cancel).
type Completion struct {
	User uint64 // the submission's user data
	Res  int32  // bytes read, or -errno
	More bool   // the multishot request stays armed
	Data []byte
	bid  int32 // buffer to give back, -1 for none
}

// New sets up a ring owned by the calling OS thread.
func New(c Config) (*Ring, error) {
	if c.Entries == 0 || c.Entries&(c.Entries-1) != 0 || c.CQEntries < c.Entries || c.CQEntries&(c.CQEntries-1) != 0 ||
		c.Buffers == 0 || c.Buffers&(c.Buffers-1) != 0 || c.Buffers > 1<<15 || c.BufSize <= 0 {
		return nil, fmt.Errorf("io_uring: bad sizes %+v", c)
	}
	base := uint32(setupSingleIssuer | setupDeferTaskrun | setupTaskrunFlag | setupCQSize | setupSubmitAll)
	var p params
	var fd int
	var err error
	for _, flags := range []uint32{base | setupNoSQArray, base} {
		p = params{flags: flags, cqEntries: c.CQEntries}
		r, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(c.Entries), uintptr(unsafe.Pointer(&p)), 0)
		if e == 0 {
			fd, err = int(r), nil
			break
		}
		err = e
	}
	if err != nil {
		return nil, fmt.Errorf("%w: io_uring_setup with single issuer and deferred task work: %w", ErrUnsupported, err)
	}
	r := &Ring{fd: fd}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.checkOps(opReadMultishot, opPollAdd, opAsyncCancel); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.setupBuffers(c.Buffers, c.BufSize); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mapRings(p *params) error {
	sqSize := uintptr(p.sqOff.array) + uintptr(p.sqEntries)*4
	if p.flags&setupNoSQArray != 0 {
		sqSize = 0
	}
	cqSize := uintptr(p.cqOff.cqes) + uintptr(p.cqEntries)*unsafe.Sizeof(cqe{})
	single := p.features&featSingleMmap != 0
	size := sqSize
	if single {
		size = max(sqSize, cqSize)
	}
	var err error
	if size > 0 {
		if r.ringMem, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return fmt.Errorf("io_uring: mmap rings: %w", err)
		}
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, int(cqSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return fmt.Errorf("io_uring: mmap CQ ring: %w", err)
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(uintptr(p.sqEntries)*unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("io_uring: mmap SQEs: %w", err)
	}
	sq := r.ringMem
	if sqSize == 0 && !single {
		return fmt.Errorf("%w: no SQ ring mapping", ErrUnsupported)
	}
	if sq == nil {
		sq = cqMem
	}
	at := func(m []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&m[off])) }
	r.sqHead, r.sqTailP, r.sqFlags = at(sq, p.sqOff.head), at(sq, p.sqOff.tail), at(sq, p.sqOff.flags)
	r.sqMask = *at(sq, p.sqOff.ringMask)
	if p.flags&setupNoSQArray == 0 {
		r.sqArray = unsafe.Slice(at(sq, p.sqOff.array), p.sqEntries)
	}
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.sqTail = atomic.LoadUint32(r.sqTailP)
	r.cqHead, r.cqTail = at(cqMem, p.cqOff.head), at(cqMem, p.cqOff.tail)
	r.cqMask = *at(cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), p.cqEntries)
	return nil
}

// checkOps fails unless the kernel supports every opcode of ops.
func (r *Ring) checkOps(ops ...uint8) error {
	var pr probe
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe, uintptr(unsafe.Pointer(&pr)), uintptr(len(pr.ops)), 0, 0); e != 0 {
		return fmt.Errorf("%w: probe: %w", ErrUnsupported, e)
	}
	for _, op := range ops {
		if op > pr.lastOp || pr.ops[op].flags&opSupported == 0 {
			return fmt.Errorf("%w: opcode %d (multishot read needs Linux 6.7)", ErrUnsupported, op)
		}
	}
	return nil
}

// setupBuffers maps n buffers of size bytes and registers them as the
// provided-buffer ring of group 0. The memory is anonymous and touched
// only by the reads that land in it.
func (r *Ring) setupBuffers(n uint32, size int) error {
	page := unix.Getpagesize()
	r.bufSize = size
	r.stride = (size + page - 1) / page * page
	var err error
	ringBytes := max(int(n)*int(unsafe.Sizeof(buf{})), page)
	ringMem, err := unix.Mmap(-1, 0, ringBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("io_uring: mmap buffer ring: %w", err)
	}
	r.bufRing = unsafe.Slice((*buf)(unsafe.Pointer(&ringMem[0])), n)
	if r.bufMem, err = unix.Mmap(-1, 0, int(n)*r.stride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE); err != nil {
		return fmt.Errorf("io_uring: mmap %d buffers: %w", n, err)
	}
	r.ringTail = (*uint32)(unsafe.Pointer(&ringMem[12])) // bid of entry 0, then the tail
	r.bufMask = n - 1
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&ringMem[0]))), ringEntries: n}
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0); e != 0 {
		return fmt.Errorf("%w: register provided-buffer ring: %w", ErrUnsupported, e)
	}
	r.given = make([]bool, n)
	for i := range n {
		r.recycle(uint16(i))
	}
	return nil
}

// recycle puts buffer id back in the provided-buffer ring.
func (r *Ring) recycle(id uint16) {
	r.given[id] = true
	e := &r.bufRing[uint32(r.bufTail)&r.bufMask]
	e.addr = uint64(uintptr(unsafe.Pointer(&r.bufMem[int(id)*r.stride])))
	e.len = uint32(r.bufSize)
	e.bid = id
	r.bufTail++
	// The tail is a 16-bit field sharing a word with entry 0's bid, ours
	// to write: publish both with one atomic store.
	bid0 := uint32(r.bufRing[0].bid)
	atomic.StoreUint32(r.ringTail, bid0|uint32(r.bufTail)<<16)
}

// Fd is the ring's descriptor.
func (r *Ring) Fd() int { return r.fd }

// MappedBytes is the address space the ring's buffers take (touched only
// where reads land).
func (r *Ring) MappedBytes() int {
	return len(r.bufMem) + len(r.bufRing)*int(unsafe.Sizeof(buf{})) + len(r.ringMem) + len(r.cqMem) + len(r.sqeMem)
}

// ErrQueueFull means the submission queue stayed full after an Enter.
var ErrQueueFull = errors.New("io_uring: submission queue full")

// next returns a zeroed SQE, submitting queued ones when the queue is full.
func (r *Ring) next() (*sqe, error) {
	if r.closed {
		return nil, errors.New("io_uring: ring closed")
	}
	if r.sqTail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		if err := r.Enter(false); err != nil {
			return nil, err
		}
		if r.sqTail-atomic.LoadUint32(r.sqHead) > r.sqMask {
			return nil, ErrQueueFull
		}
	}
	i := r.sqTail & r.sqMask
	s := &r.sqes[i]
	*s = sqe{}
	if r.sqArray != nil {
		r.sqArray[i] = i
	}
	r.sqTail++
	return s, nil
}

// ReadMultishot queues a multishot read of fd into provided buffers, each
// completion tagged user. It stays armed until an error, end of file, no
// free buffer (-ENOBUFS) or a cancel: a completion without More.
func (r *Ring) ReadMultishot(fd int, user uint64) error {
	s, err := r.next()
	if err != nil {
		return err
	}
	s.opcode, s.fd, s.flags, s.userData = opReadMultishot, int32(fd), sqeBufferSelect, user
	return nil
}

// PollMultishot queues a multishot poll for input on fd.
func (r *Ring) PollMultishot(fd int, user uint64) error {
	s, err := r.next()
	if err != nil {
		return err
	}
	s.opcode, s.fd, s.len, s.opFlags, s.userData = opPollAdd, int32(fd), pollAddMulti, unix.POLLIN, user
	return nil
}

// Cancel queues the cancellation of every request tagged target; its own
// completion is tagged user (Res: how many, or -ENOENT).
func (r *Ring) Cancel(target, user uint64) error {
	s, err := r.next()
	if err != nil {
		return err
	}
	s.opcode, s.addr, s.opFlags, s.userData = opAsyncCancel, target, cancelUserData|cancelAll, user
	s.fd = -1
	return nil
}

// Nop queues a no-op completing with user (for tests and wake-ups).
func (r *Ring) Nop(user uint64) error {
	s, err := r.next()
	if err != nil {
		return err
	}
	s.opcode, s.userData = opNop, user
	return nil
}

// Enter submits the queued requests and runs the deferred work that
// produces completions: every armed read whose descriptor has data reads
// now, as long as buffers last. With wait it blocks until at least one
// completion is waiting.
func (r *Ring) Enter(wait bool) error {
	if r.closed {
		return errors.New("io_uring: ring closed")
	}
	atomic.StoreUint32(r.sqTailP, r.sqTail)
	for {
		submit := r.sqTail - atomic.LoadUint32(r.sqHead)
		var e unix.Errno
		if wait {
			_, _, e = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), 1, enterGetEvents, 0, 0)
		} else {
			_, _, e = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), 0, enterGetEvents, 0, 0)
		}
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			if wait && r.Ready() {
				return nil
			}
			continue
		case unix.EBUSY, unix.EAGAIN:
			// Completions overflowed: the caller reaps and enters again.
			return nil
		}
		return fmt.Errorf("io_uring_enter: %w", e)
	}
}

// Ready reports, without a system call, whether Enter has something to do
// or Next something to return: queued submissions, deferred work the
// kernel flagged (IORING_SQ_TASKRUN: a descriptor with an armed read has
// data), overflowed or waiting completions.
func (r *Ring) Ready() bool {
	return atomic.LoadUint32(r.sqFlags)&(sqTaskrun|sqCQOverflow) != 0 ||
		atomic.LoadUint32(r.cqTail) != atomic.LoadUint32(r.cqHead) ||
		r.sqTail != atomic.LoadUint32(r.sqHead)
}

// Next takes the next completion, false when there is none. A completion
// with a buffer must be given to Release once Data is no longer used.
func (r *Ring) Next() (Completion, bool) {
	head := atomic.LoadUint32(r.cqHead)
	if head == atomic.LoadUint32(r.cqTail) {
		return Completion{}, false
	}
	e := r.cqes[head&r.cqMask]
	atomic.StoreUint32(r.cqHead, head+1)
	return r.completion(e), true
}

// completion checks e and takes its buffer, if any.
func (r *Ring) completion(e cqe) Completion {
	c := Completion{User: e.userData, Res: e.res, More: e.flags&cqeFMore != 0, bid: -1}
	if e.flags&cqeFBuffer != 0 {
		id := e.flags >> cqeBufferShift
		// A buffer the kernel does not hold (a bad id, or one it handed
		// out before) is not given back twice.
		if id <= r.bufMask && r.given[id] {
			r.given[id] = false
			c.bid = int32(id)
			if e.res > 0 && int(e.res) <= r.bufSize {
				off := int(id) * r.stride
				c.Data = r.bufMem[off : off+int(e.res) : off+r.bufSize]
			}
		}
	}
	return c
}

// Release gives c's buffer back to the kernel; c.Data is invalid after it.
func (r *Ring) Release(c *Completion) {
	if c.bid >= 0 && !r.closed {
		r.recycle(uint16(c.bid))
	}
	c.bid, c.Data = -1, nil
}

// closeUser tags the cancellation Close makes.
const closeUser = ^uint64(0)

// Close cancels every request, waits for their completions (so that no
// read lands in the buffers once they are unmapped), and releases the ring.
// It must run on the ring's thread.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	var errs []error
	if r.bufMem != nil && r.sqes != nil {
		if s, err := r.next(); err == nil {
			s.opcode, s.opFlags, s.userData, s.fd = opAsyncCancel, cancelAll|1<<2, closeUser, -1 // IORING_ASYNC_CANCEL_ANY
			errs = append(errs, r.drain())
		} else {
			errs = append(errs, err)
		}
	}
	r.closed = true
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.ringMem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	if err := unix.Close(r.fd); err != nil {
		errs = append(errs, fmt.Errorf("io_uring: close: %w", err))
	}
	if r.bufRing != nil {
		_ = unix.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&r.bufRing[0])), max(len(r.bufRing)*int(unsafe.Sizeof(buf{})), unix.Getpagesize())))
	}
	if r.bufMem != nil {
		_ = unix.Munmap(r.bufMem)
	}
	return errors.Join(errs...)
}

// drain enters until the close cancellation has completed and then reaps
// what the cancelled requests posted.
func (r *Ring) drain() error {
	for {
		if err := r.Enter(true); err != nil {
			return err
		}
		done := false
		for {
			c, ok := r.Next()
			if !ok {
				break
			}
			if c.User == closeUser {
				done = true
			}
			r.Release(&c)
		}
		if done {
			// The cancelled requests' last completions come as deferred
			// work: run it once more without waiting.
			if err := r.Enter(false); err != nil {
				return err
			}
			for c, ok := r.Next(); ok; c, ok = r.Next() {
				r.Release(&c)
			}
			return nil
		}
	}
}
