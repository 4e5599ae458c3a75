package tap

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// desc is the descriptor behind a VnetTAP or a Packet. By default the Go
// netpoller manages it: a read that finds nothing parks its goroutine until
// epoll reports the descriptor readable. Opened polled, it stays out of the
// netpoller, so that a frame's arrival wakes no goroutine, and is served by
// a poll thread of its own (the datapath's, with busy polling) that reads it
// with try; a read or write that has to wait sleeps in poll(2).
type desc struct {
	fd     int
	rc     syscall.RawConn // netpoller mode
	f      *os.File        // netpoller mode
	mu     sync.RWMutex    // polled mode: calls hold it shared, close exclusively
	closed atomic.Bool
}

// newDesc takes over the non-blocking descriptor fd.
func newDesc(fd int, name string, polled bool) (*desc, error) {
	d := &desc{fd: fd}
	if polled {
		return d, nil
	}
	// os.NewFile sees the non-blocking flag and registers fd with the poller.
	d.f = os.NewFile(uintptr(fd), name)
	rc, err := d.f.SyscallConn()
	if err != nil {
		d.f.Close()
		return nil, err
	}
	d.rc = rc
	return d, nil
}

// pollWaitMs is how long a polled descriptor's waiting read or write sleeps
// in poll(2) before it looks again whether the descriptor has been closed.
const pollWaitMs = 100

// call runs fn, a raw non-blocking system call that reports false for
// "would block", until it is done; write says which readiness to wait for.
func (d *desc) call(fn func(fd uintptr) bool, write bool) error {
	if d.rc != nil {
		if write {
			return d.rc.Write(fn)
		}
		return d.rc.Read(fn)
	}
	events := int16(unix.POLLIN)
	if write {
		events = unix.POLLOUT
	}
	for {
		done, err := d.try(fn)
		if done || err != nil {
			return err
		}
		pfd := []unix.PollFd{{Fd: int32(d.fd), Events: events}}
		if _, err := unix.Poll(pfd, pollWaitMs); err != nil && err != unix.EINTR {
			return err
		}
	}
}

// try runs fn once on a polled descriptor and reports whether it was done
// (false: it would block).
func (d *desc) try(fn func(fd uintptr) bool) (bool, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed.Load() {
		return false, ErrClosed
	}
	return fn(uintptr(d.fd)), nil
}

// fail returns the error of an operation op on the descriptor of the port
// kind name: ErrClosed once the descriptor is closed (the netpoller's "use
// of closed file", a polled call's ErrClosed), else err with the port and
// operation.
func (d *desc) fail(kind, name, op string, err error) error {
	if d.closed.Load() {
		return ErrClosed
	}
	return portErr(kind, name, op, err)
}

// close closes the descriptor: through the netpoller, which wakes a pending
// read, or, polled, once no call is under way (a waiting read sees it
// within pollWaitMs).
func (d *desc) close() error {
	if d.f != nil {
		d.closed.Store(true)
		return d.f.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return os.ErrClosed
	}
	return unix.Close(d.fd)
}
