package vswitch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/capture"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// sink is a Device that records what it was given, for assertions.
type sink struct{ frames [][]byte }

func (s *sink) WriteFrame(f []byte, _ packet.Offload) error {
	s.frames = append(s.frames, append([]byte(nil), f...))
	return nil
}

func (s *sink) take() [][]byte {
	f := s.frames
	s.frames = nil
	return f
}

type rig struct {
	sw    *Switch
	clk   *clock.Fake
	ports []*Port
	sinks []*sink
}

func newRig(t *testing.T, n int, c Config) *rig {
	t.Helper()
	r := &rig{clk: &clock.Fake{}}
	c.Name = "test"
	c.Clock = r.clk
	r.sw = New(c)
	for i := range n {
		s := &sink{}
		p, err := r.sw.AddPort(PortConfig{Name: string(rune('a' + i))}, s)
		require.NoError(t, err)
		r.ports = append(r.ports, p)
		r.sinks = append(r.sinks, s)
	}
	return r
}

// delivered returns, per port, how many frames it was given, and clears them.
func (r *rig) delivered() []int {
	out := make([]int, len(r.sinks))
	for i, s := range r.sinks {
		out[i] = len(s.take())
	}
	return out
}

func mac(b byte) packet.MAC { return packet.MAC{0x02, 0x42, 0, 0, 0, b} }

// frame builds an Ethernet/IPv4/UDP frame with gopacket.
func frame(t testing.TB, src, dst packet.MAC) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, src[5]}, DstIP: net.IP{10, 0, 0, dst[5]}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("hello")))
	return buf.Bytes()
}

func TestUnknownUnicastFloodsExceptIngress(t *testing.T) {
	r := newRig(t, 3, Config{})
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(2)), packet.Offload{})
	require.Equal(t, []int{0, 1, 1}, r.delivered())
}

func TestBroadcastAndMulticastFlood(t *testing.T) {
	r := newRig(t, 4, Config{})
	r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{})
	require.Equal(t, []int{1, 0, 1, 1}, r.delivered())
	// A multicast destination floods even when a "station" with that MAC
	// could never be learned (multicast sources are refused).
	r.sw.Input(r.ports[2], frame(t, mac(3), packet.MAC{0x01, 0x00, 0x5e, 0, 0, 1}), packet.Offload{})
	require.Equal(t, []int{1, 1, 0, 1}, r.delivered())
}

func TestLearningThenKnownUnicastToOnePort(t *testing.T) {
	r := newRig(t, 3, Config{})
	r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{}) // learn mac(2) on b
	r.delivered()
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(2)), packet.Offload{})
	require.Equal(t, []int{0, 1, 0}, r.delivered())
	// and the reply goes back to a only, since mac(1) was learned too
	r.sw.Input(r.ports[1], frame(t, mac(2), mac(1)), packet.Offload{})
	require.Equal(t, []int{1, 0, 0}, r.delivered())

	entries := r.sw.Entries()
	require.Len(t, entries, 2)
	require.Equal(t, Entry{MAC: mac(1), Port: "a"}, entries[0])
	require.Equal(t, Entry{MAC: mac(2), Port: "b"}, entries[1])
}

func TestFrameIsDeliveredIntact(t *testing.T) {
	r := newRig(t, 2, Config{})
	f := frame(t, mac(1), mac(2))
	r.sw.Input(r.ports[0], f, packet.Offload{})
	got := r.sinks[1].take()
	require.Len(t, got, 1)
	require.Equal(t, f, got[0])
	pkt := gopacket.NewPacket(got[0], layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, pkt.ErrorLayer())
	require.Equal(t, []byte("hello"), pkt.ApplicationLayer().Payload())
}

func TestNoHairpinBackToIngress(t *testing.T) {
	r := newRig(t, 3, Config{})
	r.sw.Input(r.ports[0], frame(t, mac(1), packet.Broadcast), packet.Offload{})
	r.sw.Input(r.ports[0], frame(t, mac(9), packet.Broadcast), packet.Offload{})
	r.delivered()
	// mac(9) lives on a: a frame from a to mac(9) must not go back out of a
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(9)), packet.Offload{})
	require.Equal(t, []int{0, 0, 0}, r.delivered())
	require.EqualValues(t, 1, r.ports[0].Stats.Dropped(stats.SamePort))
}

func TestAgeingWithFakeClock(t *testing.T) {
	r := newRig(t, 3, Config{Ageing: 10 * time.Second})
	events, cancel := r.sw.Subscribe()
	defer cancel()
	r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{})
	require.Equal(t, Learned, (<-events).Type)
	r.delivered()

	r.clk.Advance(9 * time.Second)
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(2)), packet.Offload{})
	require.Equal(t, []int{0, 1, 0}, r.delivered(), "entry still fresh")
	require.Equal(t, Learned, (<-events).Type) // mac(1)

	r.clk.Advance(2 * time.Second) // mac(2) last seen 11 s ago
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(2)), packet.Offload{})
	require.Equal(t, []int{0, 1, 1}, r.delivered(), "an aged entry is unknown: flood")

	r.sw.Expire()
	ev := <-events
	require.Equal(t, Aged, ev.Type)
	require.Equal(t, mac(2), ev.MAC)
	require.Equal(t, "b", ev.Port)
	require.Len(t, r.sw.Entries(), 1) // mac(1) was refreshed just now
}

func TestRefreshKeepsEntryAlive(t *testing.T) {
	r := newRig(t, 2, Config{Ageing: 10 * time.Second})
	for range 5 {
		r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{})
		r.clk.Advance(6 * time.Second)
		r.sw.Expire()
	}
	require.Len(t, r.sw.Entries(), 1)
}

func TestStationMove(t *testing.T) {
	r := newRig(t, 3, Config{})
	events, cancel := r.sw.Subscribe()
	defer cancel()
	r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{})
	<-events
	r.sw.Input(r.ports[2], frame(t, mac(2), packet.Broadcast), packet.Offload{}) // moved to c
	ev := <-events
	require.Equal(t, Moved, ev.Type)
	require.Equal(t, "c", ev.Port)
	require.Equal(t, "b", ev.From)
	r.delivered()
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(2)), packet.Offload{})
	require.Equal(t, []int{0, 0, 1}, r.delivered())
}

func TestStaticEntry(t *testing.T) {
	r := newRig(t, 3, Config{Ageing: time.Second})
	require.NoError(t, r.sw.AddStatic(0, mac(7), r.ports[2]))
	require.Error(t, r.sw.AddStatic(0, packet.Broadcast, r.ports[2]))
	// a frame claiming mac(7) from elsewhere does not move a static entry
	r.sw.Input(r.ports[1], frame(t, mac(7), packet.Broadcast), packet.Offload{})
	r.clk.Advance(time.Hour)
	r.sw.Expire()
	r.delivered()
	r.sw.Input(r.ports[0], frame(t, mac(1), mac(7)), packet.Offload{})
	require.Equal(t, []int{0, 0, 1}, r.delivered())
	e := r.sw.Entries()
	require.True(t, e[len(e)-1].Static)
}

func TestFDBMax(t *testing.T) {
	r := newRig(t, 3, Config{MaxEntries: 2})
	for i := byte(1); i <= 5; i++ {
		r.sw.Input(r.ports[0], frame(t, mac(i), packet.Broadcast), packet.Offload{})
	}
	require.Len(t, r.sw.Entries(), 2)
	require.EqualValues(t, 3, r.sw.LearnRefused.Load())
	r.delivered()
	// an unlearned station is still reachable, by flooding
	r.sw.Input(r.ports[1], frame(t, mac(20), mac(5)), packet.Offload{})
	require.Equal(t, []int{1, 0, 1}, r.delivered())
	// and a learned one by unicast
	r.sw.Input(r.ports[1], frame(t, mac(20), mac(1)), packet.Offload{})
	require.Equal(t, []int{1, 0, 0}, r.delivered())
	// ageing frees room for new stations
	r.clk.Advance(301 * time.Second)
	r.sw.Expire()
	r.sw.Input(r.ports[0], frame(t, mac(30), packet.Broadcast), packet.Offload{})
	require.Len(t, r.sw.Entries(), 1)
}

func TestMalformedFramesDroppedAndCounted(t *testing.T) {
	r := newRig(t, 2, Config{})
	good := frame(t, mac(1), mac(2))
	cases := map[string]struct {
		frame  []byte
		reason stats.Reason
	}{
		"empty":              {nil, stats.Truncated},
		"short header":       {good[:13], stats.Truncated},
		"truncated vlan tag": {append(append([]byte{}, good[:12]...), 0x81, 0x00, 0x00), stats.Truncated},
		"multicast source":   {frame(t, packet.MAC{0x01, 0, 0, 0, 0, 1}, mac(2)), stats.BadSrcMAC},
		"zero source":        {frame(t, packet.MAC{}, mac(2)), stats.BadSrcMAC},
	}
	for name, c := range cases {
		before := r.ports[0].Stats.Dropped(c.reason)
		r.sw.Input(r.ports[0], c.frame, packet.Offload{})
		require.Equal(t, before+1, r.ports[0].Stats.Dropped(c.reason), name)
	}
	require.Equal(t, []int{0, 0}, r.delivered())
	require.Empty(t, r.sw.Entries())
	require.EqualValues(t, len(cases), r.ports[0].Stats.RxPackets.Load())
}

func TestPortSecurity(t *testing.T) {
	r := newRig(t, 2, Config{})
	p, err := r.sw.AddPort(PortConfig{Name: "secure", Secure: true, MAC: mac(5), IP: [4]byte{10, 0, 0, 5}}, &sink{})
	require.NoError(t, err)
	r.sw.Input(p, frame(t, mac(6), packet.Broadcast), packet.Offload{})
	require.EqualValues(t, 1, p.Stats.Dropped(stats.PortSecurity))
	require.Equal(t, []int{0, 0}, r.delivered())
	r.sw.Input(p, frame(t, mac(5), packet.Broadcast), packet.Offload{})
	require.Equal(t, []int{1, 1}, r.delivered())
}

func TestCounters(t *testing.T) {
	r := newRig(t, 2, Config{})
	f := frame(t, mac(1), packet.Broadcast)
	r.sw.Input(r.ports[0], f, packet.Offload{})
	r.sw.Input(r.ports[0], f, packet.Offload{})
	s := r.ports[0].Stats.Snapshot()
	require.EqualValues(t, 2, s.RxPackets)
	require.EqualValues(t, 2*len(f), s.RxBytes)
	s = r.ports[1].Stats.Snapshot()
	require.EqualValues(t, 2, s.TxPackets)
	require.EqualValues(t, 2*len(f), s.TxBytes)
}

func TestRemovePortFlushesItsEntries(t *testing.T) {
	r := newRig(t, 3, Config{})
	r.sw.Input(r.ports[1], frame(t, mac(2), packet.Broadcast), packet.Offload{})
	r.sw.Input(r.ports[2], frame(t, mac(3), packet.Broadcast), packet.Offload{})
	r.sw.RemovePort(r.ports[1])
	require.Len(t, r.sw.Entries(), 1)
	require.Nil(t, r.sw.Port("b"))
	_, err := r.sw.AddPort(PortConfig{Name: "c"}, &sink{})
	require.Error(t, err, "duplicate port names are refused")
}

// TestConcurrentPorts runs one reader per port, as the datapath does, under
// the race detector.
func TestConcurrentPorts(t *testing.T) {
	sw := New(Config{Name: "race", Clock: &clock.Fake{}, MaxEntries: 64})
	const n = 4
	ports := make([]*Port, n)
	for i := range ports {
		p, err := sw.AddPort(PortConfig{Name: string(rune('a' + i))}, discard{})
		require.NoError(t, err)
		ports[i] = p
	}
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(t, mac(byte(i+1)), mac(byte((i+1)%n+1)))
	}
	done := make(chan struct{})
	for i := range ports {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 2000 {
				sw.Input(ports[i], frames[i], packet.Offload{})
				if j%500 == 0 {
					sw.Expire()
					_ = sw.Entries()
				}
			}
		}()
	}
	for range ports {
		<-done
	}
	require.Len(t, sw.Entries(), n)
}

type discard struct{}

func (discard) WriteFrame([]byte, packet.Offload) error { return nil }

// TestKnownUnicastDoesNotAllocate enforces the zero-allocation hot path,
// for IPv4 and IPv6 frames from ports with and without port security;
// every frame is delivered.
func TestKnownUnicastDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		name       string
		secure, v6 bool
	}{{"IPv4", false, false}, {"IPv4 secure", true, false}, {"IPv6", false, true}, {"IPv6 secure", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			sw, in, f := benchSetupSecure(t, c.secure, c.v6)
			out := sw.Ports()[1]
			before := out.Stats.TxPackets.Load()
			allocs := testing.AllocsPerRun(1000, func() { sw.Input(in, f, packet.Offload{}) })
			require.Zero(t, allocs)
			require.EqualValues(t, 1001, out.Stats.TxPackets.Load()-before, "every frame reached b")
		})
	}
}

func TestKnownUnicastWithIdleObserverDoesNotAllocate(t *testing.T) {
	sw, in, f := benchSetup(t)
	sw.SetObserver(capture.NewHub())
	allocs := testing.AllocsPerRun(1000, func() { sw.Input(in, f, packet.Offload{}) })
	require.Zero(t, allocs)
}

// observed records what an Observer is given.
type observed struct {
	active bool
	frames []string // "network port len"
}

func (o *observed) Active() bool { return o.active }
func (o *observed) Frame(network, port string, frame []byte, _ packet.Offload) {
	o.frames = append(o.frames, fmt.Sprintf("%s %s %d", network, port, len(frame)))
}

func TestObserver(t *testing.T) {
	r := newRig(t, 3, Config{})
	o := &observed{active: true}
	r.sw.SetObserver(o)
	bcast := frame(t, mac(1), packet.Broadcast)
	n := len(bcast)
	r.sw.Input(r.ports[0], bcast, packet.Offload{}) // flooded: rx on a, tx on b and c
	require.Equal(t, []string{
		fmt.Sprintf("test a %d", n), fmt.Sprintf("test b %d", n), fmt.Sprintf("test c %d", n),
	}, o.frames)
	o.frames = nil
	r.sw.Input(r.ports[1], frame(t, mac(2), mac(1)), packet.Offload{}) // known unicast: rx on b, tx on a
	require.Equal(t, []string{fmt.Sprintf("test b %d", n), fmt.Sprintf("test a %d", n)}, o.frames)
	o.frames = nil
	r.sw.Input(r.ports[2], []byte{1, 2, 3}, packet.Offload{}) // dropped, but seen received
	require.Equal(t, []string{"test c 3"}, o.frames)
	o.frames = nil
	o.active = false
	r.sw.Input(r.ports[0], bcast, packet.Offload{})
	require.Empty(t, o.frames, "an inactive observer is not called")
	o.active = true
	r.sw.SetObserver(nil)
	r.sw.Input(r.ports[0], bcast, packet.Offload{})
	require.Empty(t, o.frames, "a removed observer is not called")
	r.delivered()
}

func benchSetup(t testing.TB) (*Switch, *Port, []byte) { return benchSetupSecure(t, false, false) }

// frame6 is frame over IPv6: a UDP datagram from fd00::src[5] to
// fd00::dst[5] with the same payload.
func frame6(t testing.TB, src, dst packet.MAC) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: addr6(src[5]).AsSlice(), DstIP: addr6(dst[5]).AsSlice()}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("hello")))
	return buf.Bytes()
}

// addr6 is fd00::n.
func addr6(n byte) netip.Addr { return netip.AddrFrom16([16]byte{0: 0xfd, 15: n}) }

// benchSetupSecure is benchSetup with port security on the ingress port
// when secure is true (its MAC, IP and IP6 are those of the frame's
// source), and an IPv6 frame (frame6) when v6 is.
func benchSetupSecure(t testing.TB, secure, v6 bool) (*Switch, *Port, []byte) {
	sw := New(Config{Name: "bench", Clock: &clock.Fake{}})
	a, _ := sw.AddPort(PortConfig{Name: "a", Secure: secure, MAC: mac(1), IP: [4]byte{10, 0, 0, 1}, IP6: addr6(1).As16()}, discard{})
	b, _ := sw.AddPort(PortConfig{Name: "b"}, discard{})
	sw.Input(b, frame(t, mac(2), packet.Broadcast), packet.Offload{})
	build := frame
	if v6 {
		build = frame6
	}
	f := build(t, mac(1), mac(2))
	sw.Input(a, f, packet.Offload{})
	return sw, a, f
}

// BenchmarkSwitchForward measures one known-unicast frame through the switch.
func BenchmarkSwitchForward(b *testing.B) { benchForward(b, false, false) }

// BenchmarkSwitchForwardSecure is BenchmarkSwitchForward with port
// security on the ingress port: the source MAC and IPv4 source are checked.
func BenchmarkSwitchForwardSecure(b *testing.B) { benchForward(b, true, false) }

// BenchmarkSwitchForward6 is BenchmarkSwitchForward for an IPv6 frame.
func BenchmarkSwitchForward6(b *testing.B) { benchForward(b, false, true) }

// BenchmarkSwitchForwardSecure6 is BenchmarkSwitchForwardSecure for an
// IPv6 frame: the source MAC and IPv6 source are checked (checkIPv6).
func BenchmarkSwitchForwardSecure6(b *testing.B) { benchForward(b, true, true) }

// benchForward sends benchSetupSecure's frame through the switch again
// and again; none may be dropped.
func benchForward(b *testing.B, secure, v6 bool) {
	sw, in, f := benchSetupSecure(b, secure, v6)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		sw.Input(in, f, packet.Offload{})
	}
	require.Empty(b, in.Stats.Snapshot().Drops, "the ingress must not drop the benchmark's frames")
}

// BenchmarkSwitchForwardCapture is BenchmarkSwitchForward with one
// capture of every port subscribed, drained into a pcap stream by another
// goroutine as GET /v1/capture does. Frames the drainer cannot keep up with
// are dropped (dropped/op).
func BenchmarkSwitchForwardCapture(b *testing.B) {
	sw, in, f := benchSetup(b)
	hub := capture.NewHub()
	sw.SetObserver(hub)
	sub, err := hub.Subscribe(capture.Filter{})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.WritePcap(ctx, io.Discard) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
		sub.Close()
	})
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		sw.Input(in, f, packet.Offload{})
	}
	b.ReportMetric(float64(sub.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkSwitchForwardCaptureIdle is BenchmarkSwitchForward with a
// capture hub set as observer but nobody capturing, as in production.
func BenchmarkSwitchForwardCaptureIdle(b *testing.B) {
	sw, in, f := benchSetup(b)
	sw.SetObserver(capture.NewHub())
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		sw.Input(in, f, packet.Offload{})
	}
}

// BenchmarkSwitchForwardParallel measures two ports forwarding to each
// other at once, each from its own goroutine as the datapath's readers do.
func BenchmarkSwitchForwardParallel(b *testing.B) {
	sw, _, f := benchSetup(b)
	ports := sw.Ports()
	frames := [][]byte{f, frame(b, mac(2), mac(1))}
	var next atomic.Int32
	b.ReportAllocs()
	b.SetParallelism(1)
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % 2
		for pb.Next() {
			sw.Input(ports[i], frames[i], packet.Offload{})
		}
	})
}

func FuzzInput(f *testing.F) {
	f.Add(frame(f, mac(1), mac(2)))
	f.Add(frame(f, mac(1), packet.Broadcast))
	f.Add([]byte{})
	f.Add(arpFrame(f, 1, mac(1), packet.Broadcast, mac(1), [4]byte{10, 0, 0, 1}, packet.MAC{}, [4]byte{10, 0, 0, 2}))
	f.Add(udpFrame(f, mac(1), packet.Broadcast, [4]byte{}, [4]byte{255, 255, 255, 255}, 68, 67))
	f.Add(raBehindHopByHop(f)) // IPv6 port security (guard.go)
	f.Fuzz(func(t *testing.T, b []byte) {
		sw := New(Config{Name: "fuzz", Clock: &clock.Fake{}, MaxEntries: 4})
		a, _ := sw.AddPort(PortConfig{Name: "a", Secure: len(b)%2 == 0, MAC: mac(1), IP: [4]byte{10, 0, 0, 1}}, discard{})
		_, _ = sw.AddPort(PortConfig{Name: "b"}, discard{})
		sw.Input(a, b, packet.Offload{})
		sw.Input(a, b, packet.Offload{})
	})
}
