package tap

import "errors"

// MaxFrame is the largest frame a port reads (a 64 KiB super-frame plus
// headers); a reader's buffer of this size never truncates.
const MaxFrame = 65536 + 64

// ErrClosed is returned by a port's reads and writes after Close.
var ErrClosed = errors.New("port closed")

// Port is one device of the datapath. ReadFrame blocks until a frame
// arrives and copies it into b; WriteFrame sends one frame and does not keep
// b. One goroutine reads; any number may write.
type Port interface {
	ReadFrame(b []byte) (int, error)
	WriteFrame(b []byte) error
	Close() error
}
