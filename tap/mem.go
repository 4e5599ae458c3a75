package tap

import (
	"errors"
	"sync"
	"time"
)

// Mem is an in-memory Port. What a test Injects is what ReadFrame returns
// (the frames "the namespace sends"); what the datapath writes is queued for
// the test to take with Recv (the frames "the namespace receives").
type Mem struct {
	in     chan []byte
	out    chan []byte
	once   sync.Once
	closed chan struct{}
}

// ErrQueueFull is what WriteFrame returns when nobody took the written
// frames fast enough; the switch counts it as a tx error.
var ErrQueueFull = errors.New("in-memory port: queue full")

// NewMem returns a port that buffers up to depth frames in each direction.
func NewMem(depth int) *Mem {
	return &Mem{in: make(chan []byte, depth), out: make(chan []byte, depth), closed: make(chan struct{})}
}

// Inject queues a copy of frame to be read by the datapath.
func (m *Mem) Inject(frame []byte) {
	select {
	case m.in <- append([]byte(nil), frame...):
	case <-m.closed:
	}
}

// ReadFrame implements Port.
func (m *Mem) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-m.in:
		return copy(b, f), nil
	case <-m.closed:
		return 0, ErrClosed
	}
}

// WriteFrame implements Port. It copies frame; when the queue is full the
// frame is dropped with ErrQueueFull, like a real device with a full queue.
func (m *Mem) WriteFrame(frame []byte) error {
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	select {
	case m.out <- append([]byte(nil), frame...):
		return nil
	default:
		return ErrQueueFull
	}
}

// Recv returns the next frame the datapath wrote, or nil after timeout.
func (m *Mem) Recv(timeout time.Duration) []byte {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-m.out:
		return f
	case <-t.C:
		return nil
	}
}

// Pending returns how many written frames wait to be received.
func (m *Mem) Pending() int { return len(m.out) }

// Close implements Port.
func (m *Mem) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}
