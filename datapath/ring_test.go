package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
	"github.com/uswitch-dev/uswitch/uring"
)

// vnetSockPort is a sockPort whose reads return a vnet header before the
// frame, as a TAP's do (tap.VnetReads): the io_uring loops read it
// themselves, without root. The peer writes header and frame.
type vnetSockPort struct{ *sockPort }

func (vnetSockPort) VnetReads() {}

// TryReadFrame splits the vnet header off, as a TAP's read does, for the
// loops that read with epoll.
func (s vnetSockPort) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	var raw [2048]byte
	n, _, ok, err := s.sockPort.TryReadFrame(raw[:])
	if err != nil || !ok {
		return 0, packet.Offload{}, ok, err
	}
	frame, off, err := tap.VnetFrame(raw[:n])
	if err != nil {
		return 0, packet.Offload{}, false, err
	}
	return copy(b, frame), off, true, nil
}

// send writes frame into the port behind a vnet header of off.
func (s vnetSockPort) send(t testing.TB, frame []byte, off packet.Offload) {
	t.Helper()
	b := make([]byte, packet.VnetHdrLen+len(frame))
	off.PutVnetHdr(b)
	copy(b[packet.VnetHdrLen:], frame)
	_, err := peerIO(unix.Write, s.peer, b)
	require.NoError(t, err)
}

// ringTopo is pollTopo with the loops reading through io_uring.
func ringTopo(t testing.TB, log *slog.Logger) (*Datapath, vnetSockPort, vnetSockPort) {
	t.Helper()
	dp, err := NewWithOptions(testPlan(true), &clock.Fake{}, log, Options{BusyPoll: true, IOUring: true})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	web, web2 := vnetSockPort{newSockPort(t)}, vnetSockPort{newSockPort(t)}
	require.NoError(t, dp.AttachEndpoint("web", web))
	require.NoError(t, dp.AttachEndpoint("web2", web2))
	return dp, web, web2
}

// TestRingForwardsInOrder: frames read by the ring cross in order, each
// once, and are counted.
func TestRingForwardsInOrder(t *testing.T) {
	require.NoError(t, ringSupport(), "io_uring with multishot reads (Linux 6.7)")
	dp, web, web2 := ringTopo(t, slog.New(slog.DiscardHandler))
	buf := make([]byte, 2048)
	first := seqFrame(t, 0)
	web.send(t, first, packet.Offload{})
	require.Equal(t, first, web2.recv(t, buf))
	const bursts, burst = 40, 32 // what the socket pair queues without dropping
	seq := uint32(1)
	for range bursts {
		for i := range uint32(burst) {
			web.send(t, seqFrame(t, seq+i), packet.Offload{})
		}
		for range burst {
			got := web2.recv(t, buf)
			require.Equal(t, seq, binary.BigEndian.Uint32(got[len(got)-4:]), "frame %d out of order", seq)
			seq++
		}
	}
	// Counted once their batch is carried.
	require.Eventually(t, func() bool {
		s, ok := dp.BusyPoll()
		return ok && s.Loops[0].Frames == 1+bursts*burst
	}, 2*time.Second, time.Millisecond)
}

// TestRingDoesNotAllocate: a frame read by the ring and carried to the
// other port allocates nothing.
func TestRingDoesNotAllocate(t *testing.T) {
	require.NoError(t, ringSupport())
	_, web, web2 := ringTopo(t, slog.New(slog.DiscardHandler))
	buf := make([]byte, 2048)
	f := seqFrame(t, 1)
	b := make([]byte, packet.VnetHdrLen+len(f))
	copy(b[packet.VnetHdrLen:], f)
	web.send(t, f, packet.Offload{})
	web2.recv(t, buf)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := peerIO(unix.Write, web.peer, b); err != nil {
			panic(err)
		}
		if _, err := peerIO(unix.Read, web2.peer, buf); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

// TestRingDetachLetsGo: once Detach returns, the ring holds the port's
// descriptor no more, so closing it closed the socket: the peer's write
// fails at once. The other port is still served.
func TestRingDetachLetsGo(t *testing.T) {
	require.NoError(t, ringSupport())
	dp, web, web2 := ringTopo(t, slog.New(slog.DiscardHandler))
	buf := make([]byte, 2048)
	web.send(t, seqFrame(t, 0), packet.Offload{})
	web2.recv(t, buf)
	for i := range 20 {
		require.NoError(t, dp.Detach("web"))
		_, err := unix.Write(web.peer, []byte("x"))
		require.True(t, errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET), "round %d: the socket is still open: %v", i, err)
		web = vnetSockPort{newSockPort(t)}
		require.NoError(t, dp.AttachEndpoint("web", web))
		web.send(t, seqFrame(t, uint32(i)), packet.Offload{})
		got := web2.recv(t, buf)
		require.Equal(t, uint32(i), binary.BigEndian.Uint32(got[len(got)-4:]))
	}
}

// TestRingLostPort: a read that ends (the other side closed: end of
// file) loses the port, which is detached and logged; the other port is
// still served. A short read (no whole vnet header) loses it too.
func TestRingLostPort(t *testing.T) {
	require.NoError(t, ringSupport())
	for _, how := range []string{"eof", "short"} {
		t.Run(how, func(t *testing.T) {
			logs := &syncWriter{w: &bytes.Buffer{}}
			dp, web, web2 := ringTopo(t, slog.New(slog.NewTextHandler(logs, nil)))
			if how == "eof" {
				require.NoError(t, unix.Shutdown(web.peer, unix.SHUT_WR))
			} else {
				_, err := peerIO(unix.Write, web.peer, []byte{1, 2, 3})
				require.NoError(t, err)
			}
			requireLost(t, dp, logs, func() { web2.send(t, seqFrame(t, 7), packet.Offload{}) })
		})
	}
}

// TestRingCloseStops: Close stops the loops with armed reads and frees
// the ring; later writes go nowhere and nothing panics.
func TestRingCloseStops(t *testing.T) {
	require.NoError(t, ringSupport())
	dp, web, _ := ringTopo(t, slog.New(slog.DiscardHandler))
	web.send(t, seqFrame(t, 1), packet.Offload{})
	closeWithin(t, dp, 10*time.Second, "the loops with armed ring reads did not stop")
	_, err := unix.Write(web.peer, []byte("x"))
	require.True(t, errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET), "the port's socket is closed: %v", err)
}

// TestRingSetupFails: a loop whose ring cannot be set up logs it and
// serves its ports with epoll, those attached before its thread started
// and after.
func TestRingSetupFails(t *testing.T) {
	require.NoError(t, ringSupport())
	orig := newLoopRing
	newLoopRing = func() (*uring.Ring, error) { return nil, errors.New("refused") }
	t.Cleanup(func() { newLoopRing = orig })
	logs := &syncWriter{w: &bytes.Buffer{}}
	_, web, web2 := ringTopo(t, slog.New(slog.NewTextHandler(logs, nil)))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "io_uring setup failed") }, 2*time.Second, time.Millisecond)
	buf := make([]byte, 2048)
	for i := range uint32(10) {
		f := seqFrame(t, i)
		web.send(t, f, packet.Offload{})
		require.Equal(t, f, web2.recv(t, buf))
	}
}
