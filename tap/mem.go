package tap

import (
	"errors"
	"sync"
	"time"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
)

// Mem is an in-memory Port. What a test Injects is what ReadFrame returns
// (the frames "the namespace sends"); what the datapath writes is queued for
// the test to take with Recv (the frames "the namespace receives").
//
// Like a TAP, it comes in two kinds: without offloads (NewMem) every frame
// written is a wire frame, super-frames segmented in software; with them
// (NewMemOffload) frames keep their Offload, as through a vnet_hdr TAP.
type Mem struct {
	in       chan memFrame
	out      chan memFrame
	offloads bool
	once     sync.Once
	closed   chan struct{}
}

type memFrame struct {
	b   []byte
	off packet.Offload
}

// ErrQueueFull is what WriteFrame returns when nobody took the written
// frames fast enough; the switch counts it as a tx error.
var ErrQueueFull = errors.New("in-memory port: queue full")

// NewMem returns a port without offloads that buffers up to depth frames in
// each direction.
func NewMem(depth int) *Mem {
	return &Mem{in: make(chan memFrame, depth), out: make(chan memFrame, depth), closed: make(chan struct{})}
}

// NewMemOffload returns a port with offloads: super-frames and partial
// checksums are written as they are.
func NewMemOffload(depth int) *Mem {
	m := NewMem(depth)
	m.offloads = true
	return m
}

// Inject queues a copy of a plain frame to be read by the datapath.
func (m *Mem) Inject(frame []byte) { m.InjectOffload(frame, packet.Offload{}) }

// InjectOffload queues a copy of frame with its offloads, as a vnet_hdr TAP
// reads one.
func (m *Mem) InjectOffload(frame []byte, off packet.Offload) {
	select {
	case m.in <- memFrame{append([]byte(nil), frame...), off}:
	case <-m.closed:
	}
}

// ReadFrame implements Port.
func (m *Mem) ReadFrame(b []byte) (int, packet.Offload, error) {
	select {
	case f := <-m.in:
		return copy(b, f.b), f.off, nil
	case <-m.closed:
		return 0, packet.Offload{}, ErrClosed
	}
}

// WriteFrame implements Port. It copies frame; when the queue is full the
// frame is dropped with ErrQueueFull, like a real device with a full queue.
func (m *Mem) WriteFrame(frame []byte, off packet.Offload) error {
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	if m.offloads {
		return m.queue(frame, off)
	}
	return gso.Wire(frame, off, func(b []byte) error { return m.queue(b, packet.Offload{}) })
}

func (m *Mem) queue(frame []byte, off packet.Offload) error {
	select {
	case m.out <- memFrame{append([]byte(nil), frame...), off}:
		return nil
	default:
		return ErrQueueFull
	}
}

// Recv returns the next frame the datapath wrote, or nil after timeout.
func (m *Mem) Recv(timeout time.Duration) []byte {
	b, _ := m.RecvOffload(timeout)
	return b
}

// RecvOffload returns the next frame the datapath wrote and its offloads,
// or nil after timeout.
func (m *Mem) RecvOffload(timeout time.Duration) ([]byte, packet.Offload) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-m.out:
		return f.b, f.off
	case <-t.C:
		return nil, packet.Offload{}
	}
}

// Pending returns how many written frames wait to be received.
func (m *Mem) Pending() int { return len(m.out) }

// Close implements Port.
func (m *Mem) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}
