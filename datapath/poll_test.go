package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// sockPort is a tap.Polled over one end of a SOCK_SEQPACKET socket pair: a
// real descriptor for the busy-poll thread's epoll set, without root. The
// test holds the other end (peer): a frame written there is a frame the
// port receives, and what the switch sends out of the port is read there.
type sockPort struct {
	fd     int
	peer   int
	mu     sync.RWMutex
	closed bool
	fail   atomic.Pointer[error] // TryReadFrame returns it (a device that fails)
}

func newSockPort(t testing.TB) *sockPort {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	// The peer blocks: the test's reads wait for the switch.
	require.NoError(t, unix.SetNonblock(fds[1], false))
	require.NoError(t, unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}))
	s := &sockPort{fd: fds[0], peer: fds[1]}
	t.Cleanup(func() { s.Close(); unix.Close(s.peer) })
	return s
}

func (s *sockPort) Fd() int { return s.fd }

func (s *sockPort) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	if err := s.fail.Load(); err != nil {
		return 0, packet.Offload{}, false, *err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, packet.Offload{}, false, tap.ErrClosed
	}
	n, err := unix.Read(s.fd, b)
	if err == unix.EAGAIN {
		return 0, packet.Offload{}, false, nil
	}
	if err != nil {
		return 0, packet.Offload{}, false, err
	}
	return n, packet.Offload{}, true, nil
}

func (s *sockPort) ReadFrame(b []byte) (int, packet.Offload, error) {
	for {
		n, off, ok, err := s.TryReadFrame(b)
		if ok || err != nil {
			return n, off, err
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *sockPort) WriteFrame(b []byte, off packet.Offload) error {
	if !off.Plain() {
		return errors.New("sockPort takes plain frames only")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return tap.ErrClosed
	}
	_, err := unix.Write(s.fd, b)
	return err
}

func (s *sockPort) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return unix.Close(s.fd)
}

// send writes a frame into the port, as the namespace behind it would.
func (s *sockPort) send(t testing.TB, frame []byte) {
	t.Helper()
	_, err := peerIO(unix.Write, s.peer, frame)
	require.NoError(t, err)
}

// recv reads the next frame the switch sent out of the port (2 s at most).
func (s *sockPort) recv(t testing.TB, buf []byte) []byte {
	t.Helper()
	n, err := peerIO(unix.Read, s.peer, buf)
	require.NoError(t, err, "no frame out of the port")
	return buf[:n]
}

// peerIO is a blocking read or write on a peer end, retried when a signal
// (the Go runtime's preemption) interrupts it: a socket with a receive
// timeout is not restarted.
func peerIO(op func(int, []byte) (int, error), fd int, b []byte) (int, error) {
	for {
		n, err := op(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// pollTopo is testPlan's front network with web and web2 on socket-pair
// ports, served by the busy-poll thread.
func pollTopo(t testing.TB) (*Datapath, *sockPort, *sockPort) {
	t.Helper()
	return pollTopoOptions(t, Options{BusyPoll: true})
}

// pollTopoOptions is pollTopo with opt.
func pollTopoOptions(t testing.TB, opt Options) (*Datapath, *sockPort, *sockPort) {
	t.Helper()
	dp, err := NewWithOptions(testPlan(true), &clock.Fake{}, slog.New(slog.DiscardHandler), opt)
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	web, web2 := newSockPort(t), newSockPort(t)
	require.NoError(t, dp.AttachEndpoint("web", web))
	require.NoError(t, dp.AttachEndpoint("web2", web2))
	return dp, web, web2
}

// seqFrame is a UDP frame web -> web2 whose payload carries seq.
func seqFrame(t testing.TB, seq uint32) []byte {
	f := udp(t, mac4(netip.MustParseAddr("172.20.0.10")), mac4(netip.MustParseAddr("172.20.0.11")), "172.20.0.10", "172.20.0.11", 64)
	binary.BigEndian.PutUint32(f[len(f)-4:], seq)
	return f
}

func TestBusyPollForwardsInOrder(t *testing.T) {
	_, web, web2 := pollTopo(t)
	buf := make([]byte, 2048)
	// The first frame floods (web2's MAC is unknown) and teaches web's.
	first := seqFrame(t, 0)
	web.send(t, first)
	require.Equal(t, first, web2.recv(t, buf))
	// Bursts (of what the socket pair queues without dropping): each frame
	// arrives once, in order, on the other port only.
	const bursts, burst = 20, 32
	seq := uint32(1)
	for range bursts {
		for i := range uint32(burst) {
			web.send(t, seqFrame(t, seq+i))
		}
		for range burst {
			got := web2.recv(t, buf)
			require.Equal(t, seq, binary.BigEndian.Uint32(got[len(got)-4:]), "frame %d out of order", seq)
			seq++
		}
	}
	back := udp(t, mac4(netip.MustParseAddr("172.20.0.11")), mac4(netip.MustParseAddr("172.20.0.10")), "172.20.0.11", "172.20.0.10", 64)
	web2.send(t, back)
	require.Equal(t, back, web.recv(t, buf))
	// Nothing else came out of web (known unicast is not flooded).
	require.NoError(t, unix.SetNonblock(web.peer, true))
	_, err := unix.Read(web.peer, buf)
	require.ErrorIs(t, err, unix.EAGAIN)
}

func TestBusyPollLostPortIsDetached(t *testing.T) {
	logs := &syncWriter{w: &bytes.Buffer{}}
	dp, err := NewWithOptions(testPlan(true), &clock.Fake{}, slog.New(slog.NewTextHandler(logs, nil)), Options{BusyPoll: true})
	require.NoError(t, err)
	defer dp.Close()
	web, web2 := newSockPort(t), newSockPort(t)
	require.NoError(t, dp.AttachEndpoint("web", web))
	require.NoError(t, dp.AttachEndpoint("web2", web2))
	gone := errors.New("device gone")
	web.fail.Store(&gone)
	web.send(t, seqFrame(t, 1)) // makes it readable, so the thread reads it
	requireLost(t, dp, logs, func() {
		web2.send(t, udp(t, mac4(netip.MustParseAddr("172.20.0.11")), packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "172.20.0.11", "172.20.0.255", 64))
	})
}

// requireLost waits until port web is detached and logged lost, then
// requires web2 still served: send puts a frame into it.
func requireLost(t *testing.T, dp *Datapath, logs *syncWriter, send func()) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, p := range dp.Network("front").Ports() {
			if p.Name == "web" {
				return false
			}
		}
		return true
	}, 2*time.Second, time.Millisecond, "web still attached")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "port lost") }, 2*time.Second, time.Millisecond)
	send()
	require.Eventually(t, func() bool {
		for _, p := range dp.Ports() {
			if p.Name == "web2" {
				return p.RxPackets == 1
			}
		}
		return false
	}, 2*time.Second, time.Millisecond)
}

// syncWriter makes a bytes.Buffer safe for the logger's concurrent writes.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestBusyPollSleepsWhenIdle(t *testing.T) {
	dp, web, web2 := pollTopo(t)
	buf := make([]byte, 2048)
	web.send(t, seqFrame(t, 1))
	web2.recv(t, buf)
	// spinIdle after the frame the thread blocks; a frame wakes it again.
	require.Eventually(t, func() bool { s, _ := dp.BusyPoll(); return s.Sleeps >= 1 }, 2*time.Second, time.Millisecond)
	for _, l := range dp.poller.loops {
		require.False(t, l.spinning.Load())
	}
	web.send(t, seqFrame(t, 2))
	got := web2.recv(t, buf)
	require.Equal(t, uint32(2), binary.BigEndian.Uint32(got[len(got)-4:]))
}

// TestBusyPollWatchdogLifts keeps every CPU busy with threads at normal
// priority: the SCHED_IDLE thread would get next to nothing, so the
// watchdog lifts it and the frames still go through. A lift is counted
// only when the thread's policy did change, which takes root (without it,
// leaving SCHED_IDLE is refused). The lift then holds while frames come,
// through the empty polls between them, and ends when the thread sleeps.
func TestBusyPollWatchdogLifts(t *testing.T) {
	testenv.NeedRoot(t)
	dp, web, web2 := pollTopo(t)
	buf := make([]byte, 2048)
	web.send(t, seqFrame(t, 0))
	web2.recv(t, buf)
	l := dp.poller.loops[0]
	policy := func() uint32 {
		attr, err := unix.SchedGetAttr(int(l.tid.Load()), 0)
		require.NoError(t, err)
		return attr.Policy
	}
	stats := func() BusyPollStats { s, _ := dp.BusyPoll(); return s }

	burners := runtime.NumCPU() + 1
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + burners))
	seq := uint32(1)
	// starve runs burners until the watchdog lifts the thread.
	starve := func() {
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range burners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // a thread of its own for the kernel to schedule
				for !stop.Load() {
				}
			}()
		}
		defer func() { stop.Store(true); wg.Wait() }()
		lifts := stats().Lifts
		deadline := time.Now().Add(5 * time.Second)
		for ; stats().Lifts == lifts; seq++ {
			web.send(t, seqFrame(t, seq))
			web2.recv(t, buf)
			require.True(t, time.Now().Before(deadline), "the watchdog never lifted the starved thread")
		}
	}
	for attempt := 0; ; attempt++ {
		starve()
		slept := stats().Sleeps
		if !l.lifted.Load() { // it slept since the lift (the test was starved too): again
			require.Less(t, attempt, 10, "the thread slept after every lift")
			continue
		}
		for range 20 {
			web.send(t, seqFrame(t, seq))
			web2.recv(t, buf)
			seq++
			time.Sleep(200 * time.Microsecond)
		}
		if stats().Sleeps == slept {
			require.Equal(t, uint32(unix.SCHED_NORMAL), policy(), "the lifted thread went back to SCHED_IDLE while frames came")
			break
		}
		require.Less(t, attempt, 10, "the thread slept between frames 200 µs apart")
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.spinning.Load() {
		require.True(t, time.Now().Before(deadline), "the thread never slept")
		time.Sleep(time.Millisecond)
	}
	web.send(t, seqFrame(t, seq))
	web2.recv(t, buf)
	for policy() != unix.SCHED_IDLE {
		require.True(t, time.Now().Before(deadline), "after a sleep the thread stayed at normal priority")
		time.Sleep(time.Millisecond)
	}
}

// closeWithin closes dp and fails the test when Close errs or has not
// returned within d (why: what that would mean).
func closeWithin(t *testing.T, dp *Datapath, d time.Duration, why string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- dp.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(d):
		t.Fatal("Close did not return: " + why)
	}
}

func TestBusyPollCloseStopsTheThread(t *testing.T) {
	dp, web, web2 := pollTopo(t)
	buf := make([]byte, 2048)
	web.send(t, seqFrame(t, 1))
	web2.recv(t, buf)
	closeWithin(t, dp, 5*time.Second, "the busy-poll thread or its watchdog did not stop")
	// The devices are closed: nothing is forwarded any more.
	_, err := peerIO(unix.Write, web.peer, seqFrame(t, 2))
	require.Error(t, err)
}

// warmPollTopo is pollTopo after one frame web -> web2 (web2's port
// learned, buffers warm); it returns that frame and a receive buffer.
func warmPollTopo(tb testing.TB) (web, web2 *sockPort, frame, buf []byte) {
	_, web, web2 = pollTopo(tb)
	buf = make([]byte, 2048)
	frame = seqFrame(tb, 1)
	web.send(tb, frame)
	web2.recv(tb, buf)
	return web, web2, frame, buf
}

// relay writes n copies of frame into web and reads them out of web2.
func relay(web, web2 *sockPort, frame, buf []byte, n int) error {
	for range n {
		if _, err := peerIO(unix.Write, web.peer, frame); err != nil {
			return err
		}
	}
	for range n {
		if _, err := peerIO(unix.Read, web2.peer, buf); err != nil {
			return err
		}
	}
	return nil
}

// TestBusyPollDoesNotAllocate: a frame through the busy-poll thread, from
// one port's descriptor to the other's, allocates nothing.
func TestBusyPollDoesNotAllocate(t *testing.T) {
	web, web2, f, buf := warmPollTopo(t)
	allocs := testing.AllocsPerRun(200, func() {
		if err := relay(web, web2, f, buf, 1); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestBusyPollStatsOnlyWithBusyPoll(t *testing.T) {
	dp, _, _ := pollTopo(t)
	_, ok := dp.BusyPoll()
	require.True(t, ok)
	plain, err := New(testPlan(true), &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer plain.Close()
	_, ok = plain.BusyPoll()
	require.False(t, ok)
}

// BenchmarkBusyPollForward: frames through the busy-poll thread between two
// socket-pair ports, in bursts of 32 (what the pair queues without
// dropping); ns/frame counts the test's own write and read as well.
func BenchmarkBusyPollForward(b *testing.B) {
	web, web2, f, buf := warmPollTopo(b)
	const burst = 32
	b.ReportAllocs()
	frames := 0
	for b.Loop() {
		if err := relay(web, web2, f, buf, burst); err != nil {
			b.Fatal(err)
		}
		frames += burst
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
}

// holdsCPULatency reports whether this process has /dev/cpu_dma_latency
// open (the busy-poll thread's PM QoS request).
func holdsCPULatency(t *testing.T) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "/dev/cpu_dma_latency" {
			return true
		}
	}
	return false
}

// TestBusyPollHoldsCPULatencyWhileSpinning: with Options.CPULatency, the
// CPU latency request is held while the thread spins after frames, and
// dropped when it sleeps.
func TestBusyPollHoldsCPULatencyWhileSpinning(t *testing.T) {
	testenv.NeedRoot(t, "/dev/cpu_dma_latency") // only root may open it
	dp, web, web2 := pollTopoOptions(t, Options{BusyPoll: true, CPULatency: true})
	buf := make([]byte, 2048)
	require.False(t, holdsCPULatency(t), "held before any frame")
	// Frames keep coming while we look, so the thread keeps spinning
	// however late a loaded machine lets this goroutine look.
	seq := uint32(0)
	require.Eventually(t, func() bool {
		seq++
		web.send(t, seqFrame(t, seq))
		web2.recv(t, buf)
		return holdsCPULatency(t)
	}, 5*time.Second, 100*time.Microsecond, "not held while spinning")
	require.Eventually(t, func() bool { s, _ := dp.BusyPoll(); return s.Sleeps >= 1 }, 2*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return !holdsCPULatency(t) }, 2*time.Second, time.Millisecond,
		"still held after the thread went to sleep")
}

// TestBusyPollNoCPULatencyByDefault: without Options.CPULatency the thread
// spins without ever opening /dev/cpu_dma_latency (the machine's power
// states are left alone). Without root nobody could open it, so the test
// only means something as root.
func TestBusyPollNoCPULatencyByDefault(t *testing.T) {
	testenv.NeedRoot(t, "/dev/cpu_dma_latency")
	dp, web, web2 := pollTopo(t)
	buf := make([]byte, 2048)
	for i := range uint32(200) {
		web.send(t, seqFrame(t, i))
		web2.recv(t, buf)
		require.False(t, holdsCPULatency(t), "held while spinning, though not asked for")
	}
	require.Eventually(t, func() bool { s, _ := dp.BusyPoll(); return s.Sleeps >= 1 }, 2*time.Second, time.Millisecond)
	require.False(t, holdsCPULatency(t))
}
