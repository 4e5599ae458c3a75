package tap

import (
	"errors"
	"sync"

	"uswitch/gso"
	"uswitch/packet"
)

// MaxFrame is the largest frame a port reads (a 64 KiB super-frame plus
// headers); a reader's buffer of this size never truncates.
const MaxFrame = 65536 + 64

// ErrClosed is returned by a port's reads and writes after Close.
var ErrClosed = errors.New("port closed")

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

// scratch holds the buffers software segmentation builds wire frames in.
var scratch = sync.Pool{New: func() any { b := make([]byte, MaxFrame); return &b }}

// writeWire writes frame to a device that takes only plain frames: as is
// when it is one, else segmented and with its checksums completed.
func writeWire(frame []byte, off packet.Offload, write func([]byte) error) error {
	if off.Plain() {
		return write(frame)
	}
	bp := scratch.Get().(*[]byte)
	defer scratch.Put(bp)
	return gso.Segment(frame, off, *bp, write)
}
