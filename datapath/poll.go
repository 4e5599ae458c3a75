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
//     (starveAfter) and lifts the thread to normal priority; the thread
//     goes back to SCHED_IDLE once it has caught up (an empty poll).
const (
	spinIdle    = 10 * time.Millisecond
	starveAfter = 2 * time.Millisecond
	spinEmpty   = 2048 // and as many empty polls: time off the CPU is not idle time
	pollBurst   = 64   // frames read from one port before the next port's turn
)

// polledPort is one port the busy-poll thread reads.
type polledPort struct {
	name  string
	dev   tap.Polled
	input func([]byte, packet.Offload)
	lost  func()
}

// poller is the busy-poll thread's state.
type poller struct {
	d  *Datapath
	ep int // epoll set: every port, and wake
	// latency: hold a CPU latency request while spinning (Options.CPULatency)
	latency bool
	wake    int // eventfd: written to stop the thread
	mu      sync.Mutex
	ports   atomic.Pointer[map[int32]*polledPort] // by descriptor; replaced, never changed
	stop    atomic.Bool

	iter     atomic.Uint64 // turns of the loop
	spinning atomic.Bool   // the thread is in its spinning phase
	normal   atomic.Bool   // it runs at normal priority (woken, or lifted by the watchdog)
	tid      atomic.Int32
	started  chan struct{} // the thread turned to SCHED_IDLE (for the watchdog)

	sleeps, lifts atomic.Uint64 // BusyPollStats
}

// BusyPollStats are the busy-poll thread's counters.
type BusyPollStats struct {
	Ports  int    `json:"ports"`  // ports the thread serves
	Sleeps uint64 `json:"sleeps"` // from spinning to a blocking wait
	Lifts  uint64 `json:"lifts"`  // to normal priority by the watchdog
}

// BusyPoll returns the busy-poll thread's counters; false without
// Options.BusyPoll.
func (d *Datapath) BusyPoll() (BusyPollStats, bool) {
	if d.poller == nil {
		return BusyPollStats{}, false
	}
	return BusyPollStats{Ports: len(*d.poller.ports.Load()), Sleeps: d.poller.sleeps.Load(), Lifts: d.poller.lifts.Load()}, true
}

func newPoller(d *Datapath, latency bool) (*poller, error) {
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
	p := &poller{d: d, ep: ep, wake: wake, latency: latency, started: make(chan struct{}, 1)}
	p.ports.Store(&map[int32]*polledPort{})
	d.wg.Add(2)
	go p.run()
	go p.watch()
	return p, nil
}

// add starts serving dev.
func (p *poller) add(name string, dev tap.Polled, input func([]byte, packet.Offload), lost func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fd := int32(dev.Fd())
	old := *p.ports.Load()
	ports := maps.Clone(old)
	ports[fd] = &polledPort{name: name, dev: dev, input: input, lost: lost}
	p.ports.Store(&ports)
	if err := unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: fd}); err != nil {
		p.ports.Store(&old)
		return fmt.Errorf("port %q: busy poll: epoll: %w", name, err)
	}
	return nil
}

// drop stops serving dev: the thread, when the port fails, or Detach,
// before it closes dev. Only dev's own entry goes, not that of a device
// that got its descriptor number after it was closed.
func (p *poller) drop(dev tap.Polled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fd := int32(dev.Fd())
	if pp := (*p.ports.Load())[fd]; pp == nil || pp.dev != dev {
		return
	}
	ports := maps.Clone(*p.ports.Load())
	delete(ports, fd)
	p.ports.Store(&ports)
	_ = unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, int(fd), nil)
}

// close makes the thread and the watchdog return (the datapath waits for
// both).
func (p *poller) close() {
	p.stop.Store(true)
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(p.wake, one[:])
	select {
	case p.started <- struct{}{}: // wake the watchdog if it waits
	default:
	}
}

// run is the thread. It keeps its OS thread locked to the end, so the
// thread, whose scheduling policy it changed, exits with it instead of
// going back to the runtime's pool.
func (p *poller) run() {
	runtime.LockOSThread()
	defer p.d.wg.Done()
	defer unix.Close(p.ep)
	defer unix.Close(p.wake)
	p.tid.Store(int32(unix.Gettid()))
	lat := cpuLatency{want: p.latency, fd: -1, log: p.d.log}
	defer lat.release()
	buf := make([]byte, tap.MaxFrame)
	var ev [64]unix.EpollEvent
	var last time.Time
	empty := 0 // polls in a row that found nothing
	for !p.stop.Load() {
		p.iter.Add(1)
		var n int
		if p.spinning.Load() {
			r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.ep), uintptr(unsafe.Pointer(&ev[0])), uintptr(len(ev)), 0, 0, 0)
			if errno == 0 {
				n = int(r)
			}
			if n == 0 {
				if p.normal.Load() && p.normal.CompareAndSwap(true, false) {
					_ = setPolicy(0, unix.SCHED_IDLE) // caught up: idle time only from here
					lat.hold()
					select {
					case p.started <- struct{}{}:
					default:
					}
				}
				empty++
				if empty >= spinEmpty && time.Since(last) >= spinIdle {
					p.spinning.Store(false)
					p.sleeps.Add(1)
					lat.release()
					_ = setPolicy(0, unix.SCHED_NORMAL) // for the next wake
				}
				continue
			}
		} else {
			var err error
			n, err = unix.EpollWait(p.ep, ev[:], -1)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				p.d.log.Error("busy poll: epoll_wait failed; the thread stops", "err", err)
				return
			}
			// The frames that woke the thread go through at normal
			// priority; it turns to SCHED_IDLE once it has caught up.
			p.normal.Store(true)
			p.spinning.Store(true)
		}
		last = time.Now()
		empty = 0
		ports := *p.ports.Load()
		for i := range n {
			if pp := ports[ev[i].Fd]; pp != nil {
				p.serve(pp, buf)
			}
		}
	}
}

// serve carries up to pollBurst frames waiting on one port through the
// datapath. A port that fails is dropped from the set and reported lost.
func (p *poller) serve(pp *polledPort, buf []byte) {
	for range pollBurst {
		frame, off, ok, err := tap.TryBorrow(pp.dev, buf) // in a veth's ring slot, or in buf
		if err != nil {
			if p.stop.Load() || (*p.ports.Load())[int32(pp.dev.Fd())] != pp {
				return // stopping, or detached (Datapath.Detach) meanwhile
			}
			p.d.log.Warn("port lost, detaching it", "port", pp.name, "err", err)
			p.drop(pp.dev)
			pp.lost()
			return
		}
		if !ok {
			return
		}
		p.d.carry(pp.name, pp.input, frame, off)
		tap.Return(pp.dev)
	}
}

// watch is the watchdog: while the thread spins, a loop that has not
// turned for starveAfter means that other threads keep it off every CPU,
// so it is lifted to normal priority until it catches up.
func (p *poller) watch() {
	defer p.d.wg.Done()
	t := time.NewTicker(starveAfter)
	defer t.Stop()
	warned := false
	for {
		<-p.started
		last := p.iter.Load()
		for p.spinning.Load() && !p.stop.Load() {
			<-t.C
			it := p.iter.Load()
			if it == last && p.spinning.Load() && p.normal.CompareAndSwap(false, true) {
				if err := setPolicy(int(p.tid.Load()), unix.SCHED_NORMAL); err != nil {
					p.normal.Store(false) // still at SCHED_IDLE: not a lift
					if !warned {
						warned = true
						p.d.log.Warn("busy poll: cannot lift the starved thread to normal priority", "err", err)
					}
				} else {
					p.lifts.Add(1)
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
