package datapath

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
	"github.com/uswitch-dev/uswitch/uring"
)

// With Options.IOUring each busy-poll loop reads its TAP queues through an
// io_uring of its own (package uring) instead of a readv per frame:
//
//   - Each TAP queue has a multishot read armed on it, into the buffers of
//     the loop's provided-buffer ring (ringBuffers of tap.MaxFrame plus the
//     vnet header, mapped anonymous and touched only where frames land).
//   - The ring defers its work to the loop's thread: a frame arriving
//     flags the ring in memory the process maps, so the spinning loop sees
//     it without a system call, and one io_uring_enter then reads every
//     frame waiting on every armed queue (as long as buffers last). Each
//     completion is a frame, split from its vnet header (tap.VnetFrame),
//     carried through the datapath, and its buffer handed back.
//   - A read ends on -ENOBUFS (the buffers ran out: frames stay queued in
//     the TAP) and is armed again; on an error or end of file the port is
//     lost, as with a failed read.
//   - Ports that are not TAPs (a veth's packet socket, read with recvmsg
//     for its auxiliary data) stay in the loop's epoll set, which the ring
//     polls: its completion makes the loop drain the set with epoll_wait.
//   - Asleep, the loop blocks in io_uring_enter until a completion.
//   - Ports are added and dropped by other goroutines: they queue the
//     change and signal the loop through an eventfd the ring polls. A
//     dropped queue's read is cancelled; Detach waits (settle) until its
//     last completion, when the ring no longer holds the descriptor, so
//     that closing the TAP removes the device as before.
//
// Writes stay one write(2) per frame: an egress must not keep a frame
// after WriteFrame returns (frames are built in scratch buffers reused at
// once, and the ring's buffer goes back after the carry), so a batched
// write would have to copy every frame.
const (
	ringBuffers = 256  // per loop (17 MiB of address space): the most frames one io_uring_enter reads
	ringSQ      = 64   // submission queue entries
	ringCQ      = 1024 // completion queue entries: every buffer's, and room
	ringBufSize = tap.MaxFrame + packet.VnetHdrLen
)

// Completion tags below slotTag are the loop's own.
const (
	tagEpoll  = 1       // the epoll set (ports that are not TAPs, and wake)
	tagCtl    = 2       // the control eventfd
	tagCancel = 3       // cancellations
	slotTag   = 1 << 32 // slot i of generation g: g<<32 | i, g >= 1
)

// ringOp is a change queued for the loop: arm pp's descriptor, or with pp
// nil cancel fd's read and close done at its last completion.
type ringOp struct {
	fd   int32
	pp   *polledPort
	done chan struct{}
}

// ringSlot is one armed queue; only the loop's thread uses it.
type ringSlot struct {
	pp   *polledPort
	fd   int32
	gen  uint32
	done []chan struct{} // settle waiters, closed at the last completion
}

// ringReads is a loop's io_uring read path.
type ringReads struct {
	l   *loop
	ctl int // eventfd: ops queued

	mu      sync.Mutex
	ops     []ringOp
	noRing  bool            // the ring could not be set up: TAPs use epoll
	pending atomic.Bool     // ops queued
	waits   []chan struct{} // settle: dropped queues whose read is still armed

	// The loop's thread only:
	r        *uring.Ring
	slots    []ringSlot
	free     []uint32
	byFd     map[int32]uint32 // armed descriptors' slots
	epollDue bool             // the epoll set may have events
	work     []ringOp         // ops taken from the queue
}

// ringSupport checks once whether this kernel sets up a ring a loop can
// use; nil if it does.
var ringSupport = sync.OnceValue(func() error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // the thread dies with the goroutine: a ring's owner
		r, err := newLoopRing()
		if err == nil {
			err = r.Close()
		}
		errc <- err
	}()
	return <-errc
})

// newLoopRing sets up a loop's ring (a variable: tests make it fail).
var newLoopRing = func() (*uring.Ring, error) {
	return uring.New(uring.Config{Entries: ringSQ, CQEntries: ringCQ, Buffers: ringBuffers, BufSize: ringBufSize})
}

func newRingReads(l *loop) (*ringReads, error) {
	ctl, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("busy poll: io_uring: eventfd: %w", err)
	}
	return &ringReads{l: l, ctl: ctl, byFd: map[int32]uint32{}}, nil
}

// take queues the arming of pp's descriptor, if the ring reads it; false
// for a port the epoll set must serve. Called with the poller's mu held.
func (rr *ringReads) take(fd int32, pp *polledPort) bool {
	return rr.queue(pp, ringOp{fd: fd, pp: pp})
}

// drop queues the cancellation of fd's read; false if the ring does not
// read fd. Called with the poller's mu held.
func (rr *ringReads) drop(fd int32, pp *polledPort) bool {
	return rr.queue(pp, ringOp{fd: fd, done: make(chan struct{})})
}

// queue queues op about pp, if the ring reads it, and signals the loop.
func (rr *ringReads) queue(pp *polledPort, op ringOp) bool {
	if _, ok := pp.dev.(tap.VnetReads); !ok {
		return false
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.noRing {
		return false
	}
	if op.done != nil {
		rr.waits = append(rr.waits, op.done)
	}
	rr.ops = append(rr.ops, op)
	rr.pending.Store(true)
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(rr.ctl, one[:])
	return true
}

// settleTimeout bounds how long settle waits for a loop (one that is
// carrying a frame returns within microseconds).
const settleTimeout = 2 * time.Second

// settle waits until the reads of the queues dropped so far have ended:
// the ring holds their descriptors no more. Not on a loop's thread.
func (rr *ringReads) settle() {
	rr.mu.Lock()
	waits := rr.waits
	rr.waits = nil
	rr.mu.Unlock()
	t := time.NewTimer(settleTimeout)
	defer t.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-t.C:
			rr.l.p.d.log.Warn("busy poll: io_uring: a dropped queue's read did not end", "loop", rr.l.id)
			return
		}
	}
}

// start sets up the ring on the loop's thread; without it, the loop's
// TAPs go to its epoll set.
func (rr *ringReads) start() {
	r, err := newLoopRing()
	if err == nil {
		rr.r = r
		if err = r.PollMultishot(rr.l.ep, tagEpoll); err == nil {
			err = r.PollMultishot(rr.ctl, tagCtl)
		}
		if err == nil {
			err = r.Enter(false)
		}
		if err != nil {
			r.Close()
			rr.r = nil
		}
	}
	if err == nil {
		rr.epollDue = true
		return
	}
	rr.l.p.d.log.Error("busy poll: io_uring setup failed; the loop reads with epoll", "loop", rr.l.id, "err", err)
	rr.mu.Lock()
	rr.noRing = true
	ops := rr.ops
	rr.ops = nil
	rr.mu.Unlock()
	for _, op := range ops {
		if op.pp != nil {
			_ = unix.EpollCtl(rr.l.ep, unix.EPOLL_CTL_ADD, int(op.fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: op.fd})
		} else {
			_ = unix.EpollCtl(rr.l.ep, unix.EPOLL_CTL_DEL, int(op.fd), nil)
			close(op.done)
		}
	}
}

// stop closes the ring (cancelling every read and waiting for their ends)
// and releases settle's waiters.
func (rr *ringReads) stop() {
	if rr.r != nil {
		if err := rr.r.Close(); err != nil {
			rr.l.p.d.log.Warn("busy poll: io_uring close", "loop", rr.l.id, "err", err)
		}
		rr.r = nil
	}
	unix.Close(rr.ctl)
	rr.mu.Lock()
	rr.noRing = true
	for _, op := range rr.ops {
		if op.done != nil {
			close(op.done)
		}
	}
	rr.ops = nil
	rr.mu.Unlock()
	for i := range rr.slots {
		for _, d := range rr.slots[i].done {
			close(d)
		}
		rr.slots[i].done = nil
	}
}

// wait is the loop's poll with the ring: it carries the frames the ring
// read and returns the epoll set's events for the loop to serve; busy is
// whether anything happened. Spinning (not block), a turn with nothing
// flagged makes no system call.
func (rr *ringReads) wait(ev []unix.EpollEvent, block bool) (n int, busy bool, err error) {
	if rr.r == nil {
		return rr.l.epollWait(ev, block)
	}
	if !block && !rr.epollDue && !rr.pending.Load() && !rr.r.Ready() {
		return 0, false, nil
	}
	if rr.pending.Load() {
		rr.apply()
	}
	if err := rr.r.Enter(block && !rr.epollDue); err != nil {
		return 0, false, err
	}
	busy = rr.reap()
	if rr.epollDue {
		n, _, _ = rr.l.epollWait(ev, false)
		rr.epollDue = n > 0 // level-triggered: drain until empty
		busy = busy || n > 0
	}
	return n, busy, nil
}

// apply arms and cancels what add and drop queued.
func (rr *ringReads) apply() {
	rr.mu.Lock()
	rr.pending.Store(false)
	rr.work = append(rr.work[:0], rr.ops...)
	clear(rr.ops)
	rr.ops = rr.ops[:0]
	rr.mu.Unlock()
	var v [8]byte
	_, _ = unix.Read(rr.ctl, v[:])
	for i := range rr.work {
		op := &rr.work[i]
		if op.pp != nil {
			rr.arm(op.fd, op.pp)
		} else {
			rr.cancel(op.fd, op.done)
		}
		*op = ringOp{}
	}
}

func (rr *ringReads) arm(fd int32, pp *polledPort) {
	if _, ok := rr.byFd[fd]; ok {
		return // armed already (a drop and an add of its number are queued in order)
	}
	var i uint32
	if k := len(rr.free); k > 0 {
		i, rr.free = rr.free[k-1], rr.free[:k-1]
	} else {
		i = uint32(len(rr.slots))
		rr.slots = append(rr.slots, ringSlot{})
	}
	s := &rr.slots[i]
	s.pp, s.fd = pp, fd
	s.gen++
	rr.byFd[fd] = i
	rr.submitRead(i)
}

func (rr *ringReads) tag(i uint32) uint64 { return uint64(rr.slots[i].gen)<<32 | uint64(i) }

// submitRead arms slot i's multishot read; a full queue is a lost port.
func (rr *ringReads) submitRead(i uint32) {
	s := &rr.slots[i]
	if err := rr.r.ReadMultishot(int(s.fd), rr.tag(i)); err != nil {
		rr.end(i, err)
	}
}

// cancel cancels fd's read; done closes at its last completion.
func (rr *ringReads) cancel(fd int32, done chan struct{}) {
	i, ok := rr.byFd[fd]
	if !ok {
		close(done)
		return
	}
	delete(rr.byFd, fd)
	s := &rr.slots[i]
	s.pp = nil
	s.done = append(s.done, done)
	if err := rr.r.Cancel(rr.tag(i), tagCancel); err != nil {
		rr.l.p.d.log.Warn("busy poll: io_uring cancel", "loop", rr.l.id, "err", err)
	}
}

// reap takes every completion: frames are carried, ended reads armed
// again or their ports lost. It reports whether there was any.
func (rr *ringReads) reap() bool {
	any := false
	frames := 0
	for {
		c, ok := rr.r.Next()
		if !ok {
			break
		}
		any = true
		switch {
		case c.User >= slotTag:
			i := uint32(c.User)
			if i >= uint32(len(rr.slots)) || rr.slots[i].gen != uint32(c.User>>32) {
				break // a freed slot's
			}
			if c.Data != nil && rr.slots[i].pp != nil {
				if rr.carry(rr.slots[i].pp, c.Data) {
					frames++
				} else {
					c.More = false // the port was lost
				}
			}
			if !c.More {
				rr.ended(i, c.Res)
			}
		case c.User == tagEpoll:
			rr.epollDue = true
			if !c.More {
				rr.rearm(rr.r.PollMultishot(rr.l.ep, tagEpoll))
			}
		case c.User == tagCtl:
			if !c.More {
				rr.rearm(rr.r.PollMultishot(rr.ctl, tagCtl))
			}
		}
		rr.r.Release(&c)
	}
	if frames > 0 {
		rr.l.frames.Add(uint64(frames))
	}
	return any
}

func (rr *ringReads) rearm(err error) {
	if err != nil {
		rr.l.p.d.log.Error("busy poll: io_uring poll", "loop", rr.l.id, "err", err)
	}
}

// carry runs one frame read into a ring buffer through the datapath;
// false if it was malformed and the port is lost.
func (rr *ringReads) carry(pp *polledPort, b []byte) bool {
	frame, off, err := tap.VnetFrame(b)
	if err != nil {
		rr.l.lose(pp, err)
		return false
	}
	off.Queue = rr.l.id
	rr.l.p.d.carry(pp.name, pp.input, frame, off)
	return true
}

// ended handles the last completion of slot i's read: armed again after
// -ENOBUFS (or an overflow that ended it after a frame); otherwise its
// port is lost, unless it was dropped or lost already.
func (rr *ringReads) ended(i uint32, res int32) {
	s := &rr.slots[i]
	if s.pp != nil && (res == -int32(unix.ENOBUFS) || res > 0) {
		rr.submitRead(i)
		return
	}
	err := error(unix.Errno(-res))
	if res >= 0 {
		err = errors.New("end of file")
	}
	rr.end(i, err)
}

// end frees slot i, whose read is over; a port still served is lost.
func (rr *ringReads) end(i uint32, err error) {
	s := &rr.slots[i]
	pp := s.pp
	if pp != nil {
		delete(rr.byFd, s.fd)
	}
	for _, d := range s.done {
		close(d)
	}
	*s = ringSlot{gen: s.gen + 1}
	rr.free = append(rr.free, i)
	if pp != nil {
		rr.l.lose(pp, fmt.Errorf("TAP %s: read: %w", pp.name, err))
	}
}
