package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// mqPort is a tap.MultiQueue over socket-pair queues, as a multi-queue
// TAP: queue i's frames are read by loop i, and a frame is written on the
// queue its Offload.Queue names, as the kernel's flow steering wants.
type mqPort struct {
	qs []*sockPort
	pq []tap.Polled
}

func newMQPort(t testing.TB, n int) *mqPort {
	m := &mqPort{}
	for range n {
		q := newSockPort(t)
		m.qs = append(m.qs, q)
		m.pq = append(m.pq, q)
	}
	return m
}

func (m *mqPort) Fd() int                                         { return m.qs[0].Fd() }
func (m *mqPort) Queues() []tap.Polled                            { return m.pq }
func (m *mqPort) ReadFrame(b []byte) (int, packet.Offload, error) { return m.qs[0].ReadFrame(b) }
func (m *mqPort) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	return m.qs[0].TryReadFrame(b)
}

func (m *mqPort) WriteFrame(b []byte, off packet.Offload) error {
	q := m.qs[0]
	if int(off.Queue) < len(m.qs) {
		q = m.qs[off.Queue]
	}
	return q.WriteFrame(b, off)
}

func (m *mqPort) Close() error {
	var errs []error
	for _, q := range m.qs {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// mqTopo is testPlan's front network with web and web2 on two-queue
// ports, served by two loops.
func mqTopo(t testing.TB) (*Datapath, *mqPort, *mqPort) {
	dp, err := NewWithOptions(testPlan(true), &clock.Fake{}, slog.New(slog.DiscardHandler), Options{BusyPoll: true, PollThreads: 2})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	web, web2 := newMQPort(t, 2), newMQPort(t, 2)
	require.NoError(t, dp.AttachEndpoint("web", web))
	require.NoError(t, dp.AttachEndpoint("web2", web2))
	return dp, web, web2
}

// TestBusyPollLoopsKeepFlowsOnTheirQueue: with two loops, each reads its
// queue of both ports, and a frame read on queue i leaves on queue i: a
// flow's replies (steered by the kernel to the queue that wrote it) come
// back to the same loop. Numbered frames on both queues at once arrive in
// order, each on its own queue, and each loop's counter counts its own.
func TestBusyPollLoopsKeepFlowsOnTheirQueue(t *testing.T) {
	dp, web, web2 := mqTopo(t)
	s, ok := dp.BusyPoll()
	require.True(t, ok)
	require.Equal(t, 2, s.Ports)
	require.Len(t, s.Loops, 2)
	require.Equal(t, 2, s.Loops[0].Queues)
	require.Equal(t, 2, s.Loops[1].Queues)

	buf := make([]byte, 2048)
	web.qs[0].send(t, seqFrame(t, 0)) // floods, teaches web's MAC
	web2.qs[0].recv(t, buf)
	toWeb := udp(t, mac4(netip.MustParseAddr("172.20.0.11")), mac4(netip.MustParseAddr("172.20.0.10")), "172.20.0.11", "172.20.0.10", 64)
	web2.qs[1].send(t, toWeb) // teaches web2's, through loop 1
	require.Equal(t, toWeb, web.qs[1].recv(t, buf))
	// A loop counts a burst once it has carried it.
	frames := func(want0, want1 uint64) func() bool {
		return func() bool {
			s, _ := dp.BusyPoll()
			return s.Loops[0].Frames == want0 && s.Loops[1].Frames == want1
		}
	}
	require.Eventually(t, frames(1, 1), 2*time.Second, time.Millisecond)

	const bursts, burst = 30, 32
	stream := func(q int) error {
		f := slices.Clone(seqFrame(t, 0))
		b := make([]byte, 2048)
		seq := uint32(1)
		for range bursts {
			for i := range uint32(burst) {
				binary.BigEndian.PutUint32(f[len(f)-4:], seq+i)
				if _, err := peerIO(unix.Write, web.qs[q].peer, f); err != nil {
					return err
				}
			}
			for range burst {
				n, err := peerIO(unix.Read, web2.qs[q].peer, b)
				if err != nil {
					return fmt.Errorf("queue %d: frame %d: %w", q, seq, err)
				}
				if got := binary.BigEndian.Uint32(b[n-4 : n]); got != seq {
					return fmt.Errorf("queue %d: frame %d arrived as %d", q, seq, got)
				}
				seq++
			}
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() { errs <- stream(0) }()
	go func() { errs <- stream(1) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	require.Eventually(t, frames(1+bursts*burst, 1+bursts*burst), 2*time.Second, time.Millisecond)
	require.NotEqual(t, dp.poller.loops[0].tid.Load(), dp.poller.loops[1].tid.Load(), "one thread")
	// Read by two loops at once, web counted every frame.
	var rx uint64
	for _, p := range dp.Ports() {
		if p.Name == "web" {
			rx = p.RxPackets
		}
	}
	require.Equal(t, uint64(1+2*bursts*burst), rx)
	require.True(t, dp.Network("front").Port("web").Shared, "a port read by two loops counts with atomic adds")
	// Nothing crossed to the other queue.
	for _, q := range web2.qs {
		require.NoError(t, unix.SetNonblock(q.peer, true))
		_, err := unix.Read(q.peer, buf)
		require.ErrorIs(t, err, unix.EAGAIN)
	}
}

// TestBusyPollLoopsSingleQueueOnLoopZero: a port without queues is read by
// loop 0 alone, beside multi-queue ones, and its frames leave a
// multi-queue port on queue 0.
func TestBusyPollLoopsSingleQueueOnLoopZero(t *testing.T) {
	dp, err := NewWithOptions(testPlan(true), &clock.Fake{}, slog.New(slog.DiscardHandler), Options{BusyPoll: true, PollThreads: 2})
	require.NoError(t, err)
	defer dp.Close()
	web, web2 := newSockPort(t), newMQPort(t, 2)
	require.NoError(t, dp.AttachEndpoint("web", web))
	require.NoError(t, dp.AttachEndpoint("web2", web2))
	s, _ := dp.BusyPoll()
	require.Equal(t, []int{2, 1}, []int{s.Loops[0].Queues, s.Loops[1].Queues})
	require.False(t, dp.Network("front").Port("web").Shared, "one reader")
	buf := make([]byte, 2048)
	f := seqFrame(t, 1)
	web.send(t, f)
	require.Equal(t, f, web2.qs[0].recv(t, buf))
	require.Eventually(t, func() bool { s, _ := dp.BusyPoll(); return s.Loops[0].Frames == 1 }, 2*time.Second, time.Millisecond)
	s, _ = dp.BusyPoll()
	require.Zero(t, s.Loops[1].Frames)
}

// TestBusyPollLoopsLostPortOnce: a multi-queue port whose queues fail on
// both loops at once is dropped from both and reported lost once; Detach
// of another takes all its queues out.
func TestBusyPollLoopsLostPortOnce(t *testing.T) {
	dp, web, web2 := mqTopo(t)
	gone := errors.New("device gone")
	for _, q := range web.qs {
		q.fail.Store(&gone)
		q.send(t, seqFrame(t, 1))
	}
	require.Eventually(t, func() bool {
		s, _ := dp.BusyPoll()
		return s.Ports == 1 && s.Loops[0].Queues == 1 && s.Loops[1].Queues == 1
	}, 2*time.Second, time.Millisecond)
	require.Nil(t, dp.Network("front").Port("web"))
	require.NoError(t, dp.Detach("web2"))
	s, _ := dp.BusyPoll()
	require.Zero(t, s.Ports)
	require.Equal(t, []int{0, 0}, []int{s.Loops[0].Queues, s.Loops[1].Queues})
	// web2's queues are closed with it.
	_, err := peerIO(unix.Write, web2.qs[1].peer, seqFrame(t, 2))
	require.Error(t, err)
}

// TestBusyPollLoopsDoNotAllocate: a frame through the second loop
// allocates nothing.
func TestBusyPollLoopsDoNotAllocate(t *testing.T) {
	_, web, web2 := mqTopo(t)
	buf := make([]byte, 2048)
	f := seqFrame(t, 1)
	web.qs[1].send(t, f)
	web2.qs[1].recv(t, buf)
	allocs := testing.AllocsPerRun(200, func() {
		if err := relay(web.qs[1], web2.qs[1], f, buf, 1); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestPollThreads(t *testing.T) {
	require.Equal(t, 3, PollThreads(3))
	require.Equal(t, MaxPollThreads, PollThreads(1000))
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	require.Equal(t, min(set.Count(), maxPollThreads), PollThreads(0))
}

// TestBusyPollLoopsSleepWhenAllIdle: a loop keeps spinning while another
// carries frames, but not for ever: once no loop has any, all sleep.
func TestBusyPollLoopsSleepWhenAllIdle(t *testing.T) {
	dp, web, web2 := mqTopo(t)
	buf := make([]byte, 2048)
	for q := range 2 {
		web.qs[q].send(t, seqFrame(t, 1))
		web2.qs[q].recv(t, buf)
	}
	require.Eventually(t, func() bool {
		s, _ := dp.BusyPoll()
		return s.Loops[0].Sleeps >= 1 && s.Loops[1].Sleeps >= 1
	}, 5*time.Second, time.Millisecond)
	for _, l := range dp.poller.loops {
		require.False(t, l.spinning.Load())
	}
}
