package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
)

// Packet is an AF_PACKET socket bound to one interface (typically the host
// end of a veth pair). It reads every frame the interface receives and
// sends frames out of it; PACKET_IGNORE_OUTGOING keeps it from reading back
// what it (or the host) transmits on that interface.
//
// The kernel strips 802.1Q/802.1ad tags into packet metadata before packet
// sockets see a frame; Packet reads the tag from PACKET_AUXDATA and puts it
// back, so ReadFrame returns the frame as it was on the wire.
//
// With a receive ring (PacketOptions.Ring) frames are read from memory
// shared with the kernel instead of one recvmsg each, and a poll thread can
// process them where they lie (Lender).
type Packet struct {
	d       *desc
	name    string
	ifindex int
	vnet    bool
	rd      msgReader

	// Receive ring state (PacketOptions.Ring). rmu is held shared while the
	// ring is read, exclusively by Close to unmap it; a slot lent by
	// TryBorrowFrame keeps the mapping until Release.
	ring *rxRing
	rmu  sync.RWMutex
	gone bool // closed: the ring is unmapped, or will be at Release
	lent int  // the slot lent out, -1 for none
	// drained: the last look found the ring empty (the next empty one
	// checks the socket for an error)
	drained bool
	ringFn  func(fd uintptr) bool
	rr      ringRead // the read ringFn makes
}

// PacketOptions are how OpenPacketWith opens a packet socket.
type PacketOptions struct {
	// Vnet: PACKET_VNET_HDR (see OpenPacket).
	Vnet bool
	// Polled leaves the socket out of the Go netpoller (Polled).
	Polled bool
	// Ring reads through a receive ring (PACKET_RX_RING) of RingBytes.
	Ring bool
	// QdiscBypass sends frames straight to the interface's driver, past
	// its queueing discipline (PACKET_QDISC_BYPASS).
	QdiscBypass bool
}

// OpenPacket opens an AF_PACKET SOCK_RAW socket for all protocols on the
// interface ifname with index ifindex, in the calling thread's network
// namespace. The socket is non-blocking and managed by the Go netpoller, so
// Close unblocks a pending ReadFrame; polled leaves it out of the netpoller
// for a poll thread (Polled).
//
// With vnet set the socket has PACKET_VNET_HDR: the kernel hands it the
// interface's GSO super-frames and partial checksums with a virtio-net
// header, and takes the same, so the namespace side of a veth can keep its
// offloads on. Without it the namespace side must have them off
// (DisableOffloads): a plain packet socket would read partial checksums it
// cannot tell from bad ones.
func OpenPacket(ifname string, ifindex int, vnet, polled bool) (*Packet, error) {
	return OpenPacketWith(ifname, ifindex, PacketOptions{Vnet: vnet, Polled: polled})
}

// OpenPacketWith opens a packet socket as OpenPacket does, with the options
// opt.
func OpenPacketWith(ifname string, ifindex int, opt PacketOptions) (*Packet, error) {
	vnet, polled := opt.Vnet, opt.Polled
	if ifindex <= 0 {
		return nil, fmt.Errorf("packet socket on %q: invalid ifindex %d", ifname, ifindex)
	}
	// Protocol 0: the socket receives nothing until bind names the
	// interface, so it never sees frames of other interfaces.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("packet socket on %q: %w (uswitch run needs root)", ifname, err)
		}
		return nil, fmt.Errorf("packet socket on %q: %w", ifname, err)
	}
	fail := func(what string, err error) (*Packet, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %q: %s: %w", ifname, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fail("PACKET_AUXDATA", err)
	}
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fail("PACKET_VNET_HDR", err)
		}
	}
	if opt.QdiscBypass {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fail("PACKET_QDISC_BYPASS", err)
		}
	}
	var ring *rxRing
	if opt.Ring {
		// Before bind: the ring is there before the first frame.
		if ring, err = setupRxRing(fd, vnet); err != nil {
			return fail("receive ring", err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		ring.unmap()
		return fail("bind", err)
	}
	d, err := newDesc(fd, "packet:"+ifname, polled)
	if err != nil {
		ring.unmap()
		return nil, fmt.Errorf("packet socket on %q: %w", ifname, err)
	}
	p := &Packet{d: d, name: ifname, ifindex: ifindex, vnet: vnet, ring: ring, lent: -1}
	p.rd.init(vnet, true)
	p.ringFn = p.ringRead
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Name returns the interface the socket is bound to.
func (p *Packet) Name() string { return p.name }

// Ifindex returns the index of the interface the socket is bound to.
func (p *Packet) Ifindex() int { return p.ifindex }

// sizeofAuxdata is sizeof(struct tpacket_auxdata).
const sizeofAuxdata = 20

// auxSpace is room for one PACKET_AUXDATA control message.
var auxSpace = unix.CmsgSpace(sizeofAuxdata)

// ReadFrame implements Port. A frame longer than b is truncated to len(b).
func (p *Packet) ReadFrame(b []byte) (int, packet.Offload, error) {
	n, off, _, err := p.read(b, true)
	return n, off, err
}

// TryReadFrame implements Polled.
func (p *Packet) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	return p.read(b, false)
}

// Fd implements Polled.
func (p *Packet) Fd() int { return p.d.fd }

func (p *Packet) read(b []byte, block bool) (int, packet.Offload, bool, error) {
	if p.ring != nil {
		f, off, ok, err := p.readRing(b, block)
		if ok {
			n := copy(b, f)
			p.Release()
			return n, off, true, nil
		}
		return 0, off, false, err
	}
	if p.d.closed.Load() { // a read after Close leaves the reader state alone
		return 0, packet.Offload{}, false, ErrClosed
	}
	// Leave room to re-insert a VLAN tag without losing the frame's end.
	buf := b
	if len(b) > 4 {
		buf = b[:len(b)-4]
	}
	n, off, ok, err := p.rd.read(p.d, buf, block)
	if err != nil {
		return 0, off, false, p.d.fail("packet", p.name, "read", err)
	}
	if !ok {
		return 0, off, false, nil
	}
	n, off = p.restore(b, n, off)
	return n, off, true, nil
}

// restore puts back the VLAN tag of the n-byte frame just read into b.
func (p *Packet) restore(b []byte, n int, off packet.Offload) (int, packet.Offload) {
	m := restoreVLAN(b, n, p.rd.control())
	if m != n && off.NeedsCsum() {
		off.CsumStart += uint16(m - n) // the tag moved the transport header
	}
	return m, off
}

// restoreVLAN re-inserts the VLAN tag the kernel moved into the auxdata of
// the n-byte frame in b, and returns the new length. It parses the control
// message by hand so that reading allocates nothing.
func restoreVLAN(b []byte, n int, oob []byte) int {
	if n < 12 || n+4 > len(b) {
		return n
	}
	tci, tpid, ok := auxVLAN(oob)
	if !ok {
		return n
	}
	copy(b[16:n+4], b[12:n])
	packet.Ethernet(b).SetTag(tpid, tci)
	return n + 4
}

// auxVLAN finds the PACKET_AUXDATA message in oob and returns the VLAN tag
// it carries, if any.
func auxVLAN(oob []byte) (tci, tpid uint16, ok bool) {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		var l int
		if unix.SizeofCmsghdr == 16 {
			l = int(binary.NativeEndian.Uint64(oob[0:8]))
		} else {
			l = int(binary.NativeEndian.Uint32(oob[0:4]))
		}
		lenSize := unix.SizeofCmsghdr - 8
		level := int32(binary.NativeEndian.Uint32(oob[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenSize+4:]))
		if l < hdr || l > len(oob) {
			return 0, 0, false
		}
		data := oob[hdr:l]
		if level == unix.SOL_PACKET && typ == unix.PACKET_AUXDATA && len(data) >= sizeofAuxdata {
			// struct tpacket_auxdata: status u32, len u32, snaplen u32,
			// mac u16, net u16, vlan_tci u16, vlan_tpid u16.
			status := binary.NativeEndian.Uint32(data[0:4])
			return vlanTag(status, binary.NativeEndian.Uint16(data[16:18]), binary.NativeEndian.Uint16(data[18:20]))
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, 0, false
}

// WriteFrame implements Port: it transmits frame out of the interface, so
// the other end of the veth receives it: with its vnet header when the
// socket has one, else as the wire frames it stands for. It does not keep
// frame.
func (p *Packet) WriteFrame(frame []byte, off packet.Offload) error {
	if p.d.closed.Load() {
		return ErrClosed
	}
	var err error
	if p.vnet {
		err = writeFrame(p.d, frame, off, true)
	} else {
		err = gso.Wire(frame, off, p.write)
	}
	if err != nil {
		return p.d.fail("packet", p.name, "write", err)
	}
	return nil
}

func (p *Packet) write(frame []byte) error {
	return writeFrame(p.d, frame, packet.Offload{}, false)
}

// Close implements Port.
func (p *Packet) Close() error {
	if p.ring != nil {
		p.rmu.Lock()
		p.gone = true
		if p.lent < 0 {
			p.ring.unmap()
		}
		p.rmu.Unlock()
	}
	if err := p.d.close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("packet %s: close: %w", p.name, err)
	}
	return nil
}
