package tap

import (
	"errors"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
)

// MaxFrame is the largest frame a port reads (a 64 KiB super-frame plus
// headers); a reader's buffer of this size never truncates.
const MaxFrame = gso.MaxFrame

// ErrClosed is returned by a port's reads and writes after Close.
var ErrClosed = errors.New("port closed")

// errShortBuffer: a read buffer with no room for a frame.
var errShortBuffer = errors.New("read buffer too short")

// Port is one device of the datapath. ReadFrame blocks until a frame
// arrives, copies it into b and returns its length and offloads (the zero
// Offload from a port without offloads); WriteFrame sends one frame and
// does not keep b. A port without offloads turns a frame with offloads
// into the frames a wire would carry (segments with complete checksums).
// One goroutine reads; any number may write.
type Port interface {
	ReadFrame(b []byte) (int, packet.Offload, error)
	WriteFrame(b []byte, off packet.Offload) error
	Close() error
}

// Polled is a port opened for a poll thread (OpenVnetTAP and OpenPacket
// with polled set): its descriptor is left out of the Go netpoller, so a
// frame's arrival wakes no goroutine. The poll thread watches Fd with epoll
// of its own and reads with TryReadFrame, which never blocks: ok is false
// when no frame was waiting. ReadFrame and WriteFrame work as on any port.
type Polled interface {
	Port
	Fd() int
	TryReadFrame(b []byte) (n int, off packet.Offload, ok bool, err error)
}

// Lender is a Polled port that can lend the frame it reads where it lies,
// in memory it shares with the kernel, instead of copying it (a Packet
// with a receive ring).
type Lender interface {
	Polled
	// TryBorrowFrame is TryReadFrame without the copy where it can: frame
	// is in the port's memory or, if not, in buf. Either way it stays
	// valid until Release, which must come before the next read.
	TryBorrowFrame(buf []byte) (frame []byte, off packet.Offload, ok bool, err error)
	Release()
}

// TryBorrow reads dev's next frame without blocking: lent in place when dev
// is a Packet (the Lender there is), else read into buf. A caller hands it
// back with Return before the next read. (A concrete type check: cheaper
// per frame than asking every TAP queue for an interface.)
func TryBorrow(dev Polled, buf []byte) ([]byte, packet.Offload, bool, error) {
	if p, ok := dev.(*Packet); ok {
		return p.TryBorrowFrame(buf)
	}
	n, off, ok, err := dev.TryReadFrame(buf)
	return buf[:n], off, ok, err
}

// Return hands back the frame TryBorrow lent from dev, if it lent one.
func Return(dev Polled) {
	if p, ok := dev.(*Packet); ok {
		p.Release()
	}
}

var _ Lender = (*Packet)(nil)

// MultiQueue is a Polled port with a descriptor per queue (a multi-queue
// TAP): each of Queues is served by its own poll loop, queue i by loop i,
// and WriteFrame writes a frame on the queue numbered by its
// Offload.Queue, so that the kernel's flow steering brings a flow's
// replies back to the loop that carried the flow. Queues has one element
// when the device has one queue.
type MultiQueue interface {
	Polled
	Queues() []Polled
}
