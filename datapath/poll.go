package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// The busy-poll thread (Options.BusyPoll) serves every tap.Polled port
// from one OS thread with an epoll set of its own, instead of a goroutine
// per port parked in the Go netpoller:
//
//   - While frames come it spins on a non-blocking epoll_wait at SCHED_IDLE
//     priority. A thread at that priority runs only on time no other thread
//     of the machine wants, and gives way at once to any that wakes, yet it
//     keeps its CPU from going to sleep between frames: a sender's frame
//     wakes nobody, and a receiver woken by our write runs at once. The
//     frames that wake it from a blocking wait go through at normal
//     priority; it turns to SCHED_IDLE at its first empty poll.
//   - After spinIdle without a frame, and at least spinEmpty polls that
//     found nothing (time spent preempted is not idle time), it blocks in
//     epoll_wait, at normal priority, and costs nothing until the next
//     frame. Measured with TCP between two TAPs: with 1 ms instead of 10 the
//     thread went to sleep in the short lulls of a transfer and carried 10%
//     less.
//   - With Options.CPULatency, while it spins it also holds a CPU latency
//     request of 0 (PM QoS, /dev/cpu_dma_latency), so that the machine's
//     idle CPUs poll instead of sleeping: a receiver that uswitch's write wakes on another CPU
//     runs without that CPU's wake-up from a halt or a deep C-state (a VM
//     exit of about 25 µs on this project's VMs, where guests do not
//     halt-poll). The request goes with the spin, and with the process.
//     It is a machine-wide power setting, so it is off unless asked for.
//   - A thread at SCHED_IDLE gets next to no CPU while other threads keep
//     every CPU busy. A watchdog goroutine sees the loop stop turning
//     (starveAfter) and lifts the thread to normal priority, where it
//     stays until traffic stops (it sleeps): a thread that went back to
//     SCHED_IDLE at its next empty poll was starved again and again by the
//     endpoints it carries for, and each stall of 2 ms or more fired the
//     TCP sender's loss probe into a spurious retransmission and a cut of
//     its window (bench/RESULTS-bimodal.md: TCP 1 stream 12.1-13.8 Gbit/s
//     with 2-9 lifts a run, 13.3-15.4 with the lift kept, quiet machine,
//     alternating runs). Without a starvation, as in a ping -A, nothing
//     changes: the thread spins at SCHED_IDLE.
const (
	spinIdle    = 10 * time.Millisecond
	starveAfter = 2 * time.Millisecond
	spinEmpty   = 2048 // and as many empty polls: time off the CPU is not idle time
	pollBurst   = 64   // frames read from one port before the next port's turn
)

// Several loops (Options.PollThreads) serve the ports from as many
// threads, each as described above, with an epoll set, watchdog and
// counters of its own:
//
//   - A multi-queue port (tap.MultiQueue) has a queue per loop: loop i
//     reads queue i of every such port. The kernel spreads the flows the
//     namespace side sends over the queues by their hash, and hands a
//     flow's frames to the queue that last wrote that flow in (tun's flow
//     steering). A loop marks every frame it reads with its number
//     (packet.Offload.Queue) and a multi-queue egress writes it on the
//     queue of that number, so a flow's frames, both ways, stay on the
//     loop that carried its first ones: one flow is served in order by one
//     thread, different flows by different threads.
//   - A veth's host end with PollThreads > 1 is a group of packet sockets
//     (tap.PacketQueues, PACKET_FANOUT_HASH), socket i read by loop i: the
//     kernel hands each direction of a flow to one socket by its hash.
//   - A single-queue port (a TAP left by an older single-queue run, a
//     packet socket without a fanout group) is served by loop 0.
//   - A loop without frames keeps spinning while another loop has had
//     frames within spinIdle: its CPU then does not halt while traffic
//     flows, so an endpoint that a write wakes on it runs at once (as with
//     Options.CPULatency, but only on the loops' CPUs and only in time no
//     other thread wants).

// polledPort is one queue (or single-queue port) a loop reads.
type polledPort struct {
	name  string
	dev   tap.Polled // the queue
	port  tap.Polled // the port it is a queue of (drop)
	input func([]byte, packet.Offload)
	lost  func()
}

// poller is the busy-poll loops and the ports they serve.
type poller struct {
	d     *Datapath
	loops []*loop
	mu    sync.Mutex // add, drop
	// queues are the queues of each port as placed on the loops (drop).
	queues map[tap.Polled][]placed
	stop   atomic.Bool
}

// placed is one queue on one loop.
type placed struct {
	l  *loop
	fd int32
}

// loop is one busy-poll thread's state. Its fields written per turn come
// after a pad, so that two loops' counters never share a cache line.
type loop struct {
	p  *poller
	id uint8 // its number, the queue it reads (packet.Offload.Queue)
	ep int   // epoll set: its queues, and wake
	// latency: hold a CPU latency request while spinning (Options.CPULatency)
	latency bool
	wake    int                                   // eventfd: written to stop the thread
	ports   atomic.Pointer[map[int32]*polledPort] // by descriptor; replaced, never changed
	started chan struct{}                         // the thread turned to SCHED_IDLE (for the watchdog)
	rr      *ringReads                            // nil: TAPs read with epoll (ring.go)
	_       [64]byte

	iter     atomic.Uint64 // turns of the loop
	spinning atomic.Bool   // the thread is in its spinning phase
	normal   atomic.Bool   // it runs at normal priority (woken, or lifted by the watchdog)
	lifted   atomic.Bool   // lifted by the watchdog: normal priority until the loop sleeps
	tid      atomic.Int32

	sleeps, lifts, frames atomic.Uint64 // BusyPollStats
	// active is when the loop last carried a frame (Unix ns), published
	// at most every activeEvery: the other loops keep spinning meanwhile.
	active atomic.Int64
	_      [64]byte
}

// activeEvery is how stale a loop's published activity may be.
const activeEvery = time.Millisecond

// BusyPollStats are the busy-poll threads' counters: the sums over the
// loops, and each loop's.
type BusyPollStats struct {
	Ports  int         `json:"ports"`  // ports the threads serve
	Sleeps uint64      `json:"sleeps"` // from spinning to a blocking wait
	Lifts  uint64      `json:"lifts"`  // to normal priority by the watchdog
	Loops  []LoopStats `json:"loops"`  // each thread's, by number
}

// LoopStats are one busy-poll thread's counters.
type LoopStats struct {
	Queues int    `json:"queues"` // port queues it reads
	Frames uint64 `json:"frames"` // frames it read and carried
	Sleeps uint64 `json:"sleeps"`
	Lifts  uint64 `json:"lifts"`
}

// BusyPoll returns the busy-poll threads' counters; false without
// Options.BusyPoll.
func (d *Datapath) BusyPoll() (BusyPollStats, bool) {
	if d.poller == nil {
		return BusyPollStats{}, false
	}
	p := d.poller
	p.mu.Lock()
	s := BusyPollStats{Ports: len(p.queues)}
	p.mu.Unlock()
	for _, l := range p.loops {
		ls := LoopStats{Queues: len(*l.ports.Load()), Frames: l.frames.Load(), Sleeps: l.sleeps.Load(), Lifts: l.lifts.Load()}
		s.Sleeps += ls.Sleeps
		s.Lifts += ls.Lifts
		s.Loops = append(s.Loops, ls)
	}
	return s, true
}

// maxPollThreads is the most loops PollThreads picks by itself, and
// MaxPollThreads the most it takes (a TAP queue per loop: the kernel
// allows 256 queues, the loops' counters 256 numbers).
const (
	maxPollThreads = 4
	MaxPollThreads = 64
)

// PollThreads is how many busy-poll loops n asks for: n itself (at most
// MaxPollThreads), or with n = 0 one per CPU the process may run on, at
// most maxPollThreads.
func PollThreads(n int) int {
	if n > 0 {
		return min(n, MaxPollThreads)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() < 1 {
		return 1
	}
	return min(set.Count(), maxPollThreads)
}

func newPoller(d *Datapath, loops int, latency, ring bool) (*poller, error) {
	p := &poller{d: d, queues: map[tap.Polled][]placed{}}
	if ring {
		if err := ringSupport(); err != nil {
			d.log.Warn("busy poll: no io_uring on this kernel; reading with epoll", "err", err)
			ring = false
		}
	}
	for i := range max(loops, 1) {
		l, err := newLoop(p, uint8(i), latency, ring)
		if err != nil {
			for _, l := range p.loops {
				unix.Close(l.ep)
				unix.Close(l.wake)
			}
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	for _, l := range p.loops {
		d.wg.Add(2)
		go l.run()
		go l.watch()
	}
	return p, nil
}

func newLoop(p *poller, id uint8, latency, ring bool) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("busy poll: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("busy poll: eventfd: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("busy poll: epoll: %w", err)
	}
	l := &loop{p: p, id: id, ep: ep, wake: wake, latency: latency, started: make(chan struct{}, 1)}
	l.ports.Store(&map[int32]*polledPort{})
	if ring {
		if l.rr, err = newRingReads(l); err != nil {
			unix.Close(ep)
			unix.Close(wake)
			return nil, err
		}
	}
	return l, nil
}

// readers is how many loops will read dev: one per queue of a multi-queue
// port, at most one per loop; 0 for a port p (nil: no busy polling) does
// not serve.
func (p *poller) readers(dev tap.Port) int {
	pd, ok := dev.(tap.Polled)
	if p == nil || !ok {
		return 0
	}
	if mq, ok := pd.(tap.MultiQueue); ok {
		return min(len(mq.Queues()), len(p.loops))
	}
	return 1
}

// add starts serving dev: each of its queues on the loop of that number
// (queue i on loop i mod loops), a single-queue port on loop 0.
func (p *poller) add(name string, dev tap.Polled, input func([]byte, packet.Offload), lost func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	qs := []tap.Polled{dev}
	if mq, ok := dev.(tap.MultiQueue); ok {
		qs = mq.Queues()
	}
	var done []placed
	for i, q := range qs {
		l := p.loops[i%len(p.loops)]
		fd := int32(q.Fd())
		if err := l.add(fd, &polledPort{name: name, dev: q, port: dev, input: input, lost: lost}); err != nil {
			for _, pl := range done {
				pl.l.del(pl.fd)
			}
			return fmt.Errorf("port %q: busy poll: epoll: %w", name, err)
		}
		done = append(done, placed{l: l, fd: fd})
	}
	p.queues[dev] = done
	return nil
}

// drop stops serving dev, every queue of it, and reports whether it was
// served: the loop whose read of it fails, or Detach, before it closes
// dev.
func (p *poller) drop(dev tap.Polled) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pls, ok := p.queues[dev]
	if !ok {
		return false
	}
	delete(p.queues, dev)
	for _, pl := range pls {
		pl.l.del(pl.fd)
	}
	return true
}

// add puts one queue in the loop's set. Called with p.mu held.
func (l *loop) add(fd int32, pp *polledPort) error {
	old := *l.ports.Load()
	ports := maps.Clone(old)
	ports[fd] = pp
	l.ports.Store(&ports)
	if l.rr != nil && l.rr.take(fd, pp) {
		return nil
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: fd}); err != nil {
		l.ports.Store(&old)
		return err
	}
	return nil
}

// del takes one queue out of the loop's set. Called with p.mu held.
func (l *loop) del(fd int32) {
	ports := maps.Clone(*l.ports.Load())
	pp := ports[fd]
	delete(ports, fd)
	l.ports.Store(&ports)
	if l.rr != nil && pp != nil && l.rr.drop(fd, pp) {
		return
	}
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, int(fd), nil)
}

// close makes the threads and the watchdogs return (the datapath waits
// for them).
func (p *poller) close() {
	p.stop.Store(true)
	for _, l := range p.loops {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(l.wake, one[:])
		select {
		case l.started <- struct{}{}: // wake the watchdog if it waits
		default:
		}
	}
}

// run is the loop's thread. It keeps its OS thread locked to the end, so
// the thread, whose scheduling policy it changed, exits with it instead of
// going back to the runtime's pool.
func (l *loop) run() {
	runtime.LockOSThread()
	p := l.p
	defer p.d.wg.Done()
	defer unix.Close(l.ep)
	defer unix.Close(l.wake)
	l.tid.Store(int32(unix.Gettid()))
	if l.rr != nil {
		l.rr.start()
		defer l.rr.stop()
	}
	lat := cpuLatency{want: l.latency, fd: -1, log: p.d.log}
	defer lat.release()
	buf := make([]byte, tap.MaxFrame)
	var ev [64]unix.EpollEvent
	var last time.Time
	empty := 0 // polls in a row that found nothing
	for !p.stop.Load() {
		l.iter.Add(1)
		spinning := l.spinning.Load()
		n, busy, err := l.wait(ev[:], !spinning)
		if spinning {
			if !busy {
				if !l.lifted.Load() && l.normal.Load() && l.normal.CompareAndSwap(true, false) {
					_ = setPolicy(0, unix.SCHED_IDLE) // caught up: idle time only from here
					lat.hold()
					select {
					case l.started <- struct{}{}:
					default:
					}
				}
				empty++
				if empty >= spinEmpty && time.Since(last) >= spinIdle && !p.othersActive(l) {
					l.spinning.Store(false)
					l.lifted.Store(false)
					l.sleeps.Add(1)
					lat.release()
					_ = setPolicy(0, unix.SCHED_NORMAL) // for the next wake
				}
				continue
			}
		} else {
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				p.d.log.Error("busy poll: wait failed; the thread stops", "loop", l.id, "err", err)
				return
			}
			// The frames that woke the thread go through at normal
			// priority; it turns to SCHED_IDLE once it has caught up.
			l.normal.Store(true)
			l.spinning.Store(true)
		}
		last = time.Now()
		if now := last.UnixNano(); now-l.active.Load() >= int64(activeEvery) {
			l.active.Store(now)
		}
		empty = 0
		ports := *l.ports.Load()
		for i := range n {
			if pp := ports[ev[i].Fd]; pp != nil {
				l.serve(pp, buf)
			}
		}
	}
}

// othersActive reports whether a loop other than l carried a frame within
// spinIdle.
func (p *poller) othersActive(l *loop) bool {
	since := time.Now().Add(-spinIdle).UnixNano()
	for _, o := range p.loops {
		if o != l && o.active.Load() >= since {
			return true
		}
	}
	return false
}

// serve carries up to pollBurst frames waiting on one queue through the
// datapath, each marked with the loop's number. A port that fails is
// dropped from every loop and reported lost.
func (l *loop) serve(pp *polledPort, buf []byte) {
	n := 0
	for range pollBurst {
		ok, err := l.read(pp, buf)
		if err != nil {
			l.lose(pp, err)
			break
		}
		if !ok {
			break
		}
		n++
	}
	if n > 0 {
		l.frames.Add(uint64(n))
	}
}

// lose drops the port of queue pp, whose read failed, from every loop
// and reports it lost, unless the poller stops or it was detached or lost
// meanwhile.
func (l *loop) lose(pp *polledPort, err error) {
	if !l.p.stop.Load() && (*l.ports.Load())[int32(pp.dev.Fd())] == pp && l.p.drop(pp.port) {
		l.p.d.log.Warn("port lost, detaching it", "port", pp.name, "err", err)
		pp.lost()
	}
}

// wait is the loop's poll: the ring's (ring.go), or the epoll set's.
func (l *loop) wait(ev []unix.EpollEvent, block bool) (n int, busy bool, err error) {
	if l.rr != nil {
		return l.rr.wait(ev, block)
	}
	return l.epollWait(ev, block)
}

// epollWait returns the epoll set's events: at once (a raw system call,
// errors as none), or waiting for one with block.
func (l *loop) epollWait(ev []unix.EpollEvent, block bool) (n int, busy bool, err error) {
	if block {
		n, err = unix.EpollWait(l.ep, ev, -1)
		return n, err == nil, err
	}
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&ev[0])), uintptr(len(ev)), 0, 0, 0)
	if errno != 0 {
		return 0, false, nil
	}
	return int(r), r > 0, nil
}

// settle waits until the ring reads of the ports dropped so far have
// ended (ring.go), so that closing them removes their devices.
func (p *poller) settle() {
	for _, l := range p.loops {
		if l.rr != nil {
			l.rr.settle()
		}
	}
}

// read is the loop's read step: one frame from queue pp, carried through
// the datapath; false when none was waiting.
func (l *loop) read(pp *polledPort, buf []byte) (bool, error) {
	frame, off, ok, err := tap.TryBorrow(pp.dev, buf) // in a veth's ring slot, or in buf
	if err != nil || !ok {
		return false, err
	}
	off.Queue = l.id
	l.p.d.carry(pp.name, pp.input, frame, off)
	tap.Return(pp.dev)
	return true, nil
}

// watch is the loop's watchdog: while the thread spins, a loop that has
// not turned for starveAfter means that other threads keep it off every
// CPU, so it is lifted to normal priority until it next sleeps.
func (l *loop) watch() {
	p := l.p
	defer p.d.wg.Done()
	t := time.NewTicker(starveAfter)
	defer t.Stop()
	warned := false
	for {
		<-l.started
		last := l.iter.Load()
		for l.spinning.Load() && !p.stop.Load() {
			<-t.C
			it := l.iter.Load()
			if it == last && l.spinning.Load() && l.normal.CompareAndSwap(false, true) {
				if err := setPolicy(int(l.tid.Load()), unix.SCHED_NORMAL); err != nil {
					l.normal.Store(false) // still at SCHED_IDLE: not a lift
					if !warned {
						warned = true
						p.d.log.Warn("busy poll: cannot lift the starved thread to normal priority", "loop", l.id, "err", err)
					}
				} else {
					l.lifted.Store(true)
					l.lifts.Add(1)
				}
			}
			last = it
		}
		if p.stop.Load() {
			return
		}
	}
}

// setPolicy sets the scheduling policy of thread tid (0: the calling one).
// It can only fail for a thread that has exited, or without the privilege
// to leave SCHED_IDLE (uswitch runs as root), and then changes nothing.
func setPolicy(tid int, policy uint32) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("sched_setattr of thread %d: %w", tid, err)
	}
	return nil
}

// cpuLatency is a PM QoS CPU latency request of 0 µs, held while its
// descriptor is open: the cpuidle governors then keep idle CPUs in their
// polling state. The kernel drops it when the descriptor closes, so a
// crashed run leaves nothing behind. Without want, hold does nothing.
type cpuLatency struct {
	want   bool
	fd     int
	failed bool
	log    *slog.Logger
}

func (c *cpuLatency) hold() {
	if !c.want || c.fd >= 0 || c.failed {
		return
	}
	fd, err := unix.Open("/dev/cpu_dma_latency", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		var zero [4]byte
		if _, err = unix.Write(fd, zero[:]); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		// Without it busy polling still works; waking an idle CPU costs
		// what it costs.
		c.failed = true
		c.log.Info("busy poll: no CPU latency request", "err", err)
		return
	}
	c.fd = fd
}

func (c *cpuLatency) release() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}
