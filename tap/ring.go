package tap

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// A packet socket's receive ring (PACKET_RX_RING, TPACKET_V2) is memory
// the kernel and uswitch share: the kernel copies each frame it receives
// into the next free slot, with a tpacket2_hdr in front, and marks the slot
// the user's; uswitch reads the frame where it lies and hands the slot back.
// Reading costs no system call, and a frame waiting in the ring is visible
// by looking at the slot's status word.
//
// TPACKET_V2, not V3: a V3 ring hands user space whole blocks, once full or
// when their retire timer (1 ms at least) fires, so a lone frame (a ping)
// waits up to the timer. V2 slots are fixed in size; a slot large enough
// for a 64 KiB offload super-frame would cost 68 KiB each. The slots are
// instead sized for one MTU-sized frame (ringSlot), and the socket has
// PACKET_COPY_THRESH: a larger frame (a super-frame) leaves the ring slot
// marked TP_STATUS_COPY and queues the whole frame on the socket, where
// recvmsg reads it with its vnet header as without a ring.
const (
	ringSlot  = 2048 // bytes per slot: tpacket2_hdr, vnet header and a 1514-byte frame
	ringBlock = 4096 // bytes per block: one page, so the kernel needs no larger allocation
	// RingSlots is how many frames a veth port's receive ring holds.
	RingSlots = 256
	// ringCopyBuf is the receive buffer for the frames that do not fit
	// a slot (the kernel counts it doubled: skb overhead).
	ringCopyBuf = 2 << 20
	// RingBytes is the memory a veth port's receive ring takes (kernel
	// pages mapped into uswitch).
	RingBytes = RingSlots * ringSlot
)

// tpHdrLen is sizeof(struct tpacket2_hdr): the frame never starts before it.
const tpHdrLen = unix.SizeofTpacket2Hdr

// Ring entry kinds (rxRing.next).
const (
	entryNone  = iota // no frame waiting
	entryFrame        // a frame in its slot
	entryCopy         // the frame did not fit: it is queued on the socket
	entryBad          // truncated or malformed: dropped
)

// RingStats are a receive ring's counters.
type RingStats struct {
	Frames    uint64 `json:"frames"`    // read in their slot
	Copied    uint64 `json:"copied"`    // too large for a slot: read from the socket
	Truncated uint64 `json:"truncated"` // too large for a slot and not queued (socket full): dropped
	Malformed uint64 `json:"malformed"` // a slot header that does not add up: dropped
}

// rxRing is the reader's view of a receive ring: mem holds n slots of
// size bytes each. One goroutine or thread reads it.
type rxRing struct {
	mem  []byte
	size int
	n    int
	head int // the next slot to look at
	vnet bool

	// Counters: the reader alone writes them, others may read them.
	frames, copied, truncated, malformed atomic.Uint64
}

// setupRxRing gives the packet socket fd a TPACKET_V2 receive ring and
// maps it. The socket's PACKET_VNET_HDR, if any, must be set before.
func setupRxRing(fd int, vnet bool) (*rxRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1); err != nil {
		return nil, fmt.Errorf("PACKET_COPY_THRESH: %w", err)
	}
	// The frames too large for a slot wait on the socket's queue, up to
	// its receive buffer: room for a burst of super-frames (64 KiB each),
	// used only while they wait. Root may go past net.core.rmem_max.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ringCopyBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ringCopyBuf)
	}
	req := unix.TpacketReq{
		Block_size: ringBlock,
		Block_nr:   RingBytes / ringBlock,
		Frame_size: ringSlot,
		Frame_nr:   RingSlots,
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, RingBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap of the receive ring: %w", err)
	}
	return newRxRing(mem, ringSlot, vnet), nil
}

func newRxRing(mem []byte, size int, vnet bool) *rxRing {
	return &rxRing{mem: mem, size: size, n: len(mem) / size, vnet: vnet}
}

// slot returns slot i's header.
func (r *rxRing) slot(i int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.mem[i*r.size]))
}

// ready reports whether a frame waits in the next slot.
func (r *rxRing) ready() bool {
	return atomic.LoadUint32(&r.slot(r.head).Status)&unix.TP_STATUS_USER != 0
}

// next takes the next slot if the kernel has filled it, and returns it with
// what it holds: for entryFrame the frame, in the slot (its VLAN tag put
// back in front of it), and its offloads. The caller hands the slot back
// with release(slot) once done with the frame (at once for the other kinds).
func (r *rxRing) next() (kind, slot int, frame []byte, off packet.Offload) {
	slot = r.head
	h := r.slot(slot)
	status := atomic.LoadUint32(&h.Status) // the kernel writes the slot before its status
	if status&unix.TP_STATUS_USER == 0 {
		return entryNone, slot, nil, off
	}
	r.head++
	if r.head == r.n {
		r.head = 0
	}
	if status&unix.TP_STATUS_COPY != 0 {
		r.copied.Store(r.copied.Load() + 1) // one writer: no locked add
		return entryCopy, slot, nil, off
	}
	base := slot * r.size
	mac, snap := int(h.Mac), int(h.Snaplen)
	front := tpHdrLen + 4 // room for a VLAN tag in front of the frame
	if r.vnet {
		front += packet.VnetHdrLen
	}
	if mac < front || snap < packet.EthernetHeaderLen || mac+snap > r.size {
		r.malformed.Store(r.malformed.Load() + 1) // one writer: no locked add
		return entryBad, slot, nil, off
	}
	if snap < int(h.Len) {
		r.truncated.Store(r.truncated.Load() + 1) // one writer: no locked add
		return entryBad, slot, nil, off
	}
	b := r.mem[base : base+r.size : base+r.size]
	if r.vnet {
		off = packet.DecodeVnetHdr(b[mac-packet.VnetHdrLen : mac])
	}
	frame = b[mac : mac+snap]
	if tci, tpid, ok := vlanTag(status, h.Vlan_tci, h.Vlan_tpid); ok {
		// Move the MAC addresses 4 bytes forward (over the vnet header,
		// already read) and put the tag between them and the rest.
		copy(b[mac-4:mac+8], b[mac:mac+12])
		frame = b[mac-4 : mac+snap]
		packet.Ethernet(frame).SetTag(tpid, tci)
		if off.NeedsCsum() {
			off.CsumStart += 4
		}
	}
	r.frames.Store(r.frames.Load() + 1) // one writer: no locked add
	return entryFrame, slot, frame, off
}

// release hands slot back to the kernel.
func (r *rxRing) release(slot int) {
	atomic.StoreUint32(&r.slot(slot).Status, unix.TP_STATUS_KERNEL)
}

func (r *rxRing) stats() RingStats {
	return RingStats{Frames: r.frames.Load(), Copied: r.copied.Load(), Truncated: r.truncated.Load(), Malformed: r.malformed.Load()}
}

// vlanTag returns the VLAN tag the kernel took off a frame, from the
// status, TCI and TPID of its tpacket_auxdata or ring slot header.
func vlanTag(status uint32, tci, tpid uint16) (uint16, uint16, bool) {
	if status&unix.TP_STATUS_VLAN_VALID == 0 && tci == 0 {
		return 0, 0, false
	}
	if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 || tpid == 0 {
		tpid = unix.ETH_P_8021Q
	}
	return tci, tpid, true
}
