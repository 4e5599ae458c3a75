package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/stretchr/testify/require"
	"github.com/uswitch-dev/uswitch/packet"
)

// testFrame is a distinct frame of n bytes (n >= 14): broadcast Ethernet,
// EtherType 0x88b5 (local experimental), payload i repeated.
func testFrame(i, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0, 0, 0, byte(i), 0x88, 0xb5})
	for j := 14; j < n; j++ {
		f[j] = byte(i)
	}
	return f
}

// captured is one frame read back from a pcap stream.
type captured struct {
	data []byte
	ci   gopacket.CaptureInfo
}

// decode reads a whole pcap stream with gopacket and checks its header.
func decode(t *testing.T, b []byte) []captured {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, layers.LinkTypeEthernet, r.LinkType())
	require.Equal(t, uint32(Snaplen), r.Snaplen())
	// Nanosecond timestamps (pcapgo's Resolution has the two swapped in
	// v1.1.19: check the magic number).
	require.Equal(t, []byte{0x4d, 0x3c, 0xb2, 0xa1}, b[:4])
	var out []captured
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, captured{data, ci})
	}
}

// capture runs WritePcap until it returns and decodes what it wrote.
func capture(t *testing.T, ctx context.Context, s *Subscription) []captured {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, s.WritePcap(ctx, &buf))
	return decode(t, buf.Bytes())
}

// awaitReader waits until the WritePcap running on s has written its
// queue and waits for the next frame: what it does next depends only on
// what the test does.
func awaitReader(t *testing.T, s *Subscription) {
	t.Helper()
	require.Eventually(t, s.waiting.Load, 10*time.Second, time.Millisecond, "WritePcap never waited for a frame")
}

func subscribe(t *testing.T, h *Hub, f Filter) *Subscription {
	t.Helper()
	s, err := h.Subscribe(f)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestFanOutToTwoSubscribers(t *testing.T) {
	h := NewHub()
	require.False(t, h.Active())
	a := subscribe(t, h, Filter{Count: 5})
	b := subscribe(t, h, Filter{Count: 5})
	require.True(t, h.Active())
	require.Equal(t, 2, h.Subscriptions())

	before := time.Now()
	var frames [][]byte
	for i := range 5 {
		f := testFrame(i, 60+i)
		frames = append(frames, f)
		h.Frame("front", "web", f, packet.Offload{})
		f[20] ^= 0xff // the hub keeps copies, not the caller's buffer
	}
	after := time.Now()
	for i := range frames {
		frames[i][20] ^= 0xff
	}

	for _, s := range []*Subscription{a, b} {
		got := capture(t, context.Background(), s)
		require.Len(t, got, 5)
		for i, p := range got {
			require.Equal(t, frames[i], p.data, "frame %d", i)
			require.Equal(t, len(frames[i]), p.ci.Length)
			require.Equal(t, len(frames[i]), p.ci.CaptureLength)
			require.False(t, p.ci.Timestamp.Before(before.Truncate(time.Microsecond)), "frame %d at %v, capture began %v", i, p.ci.Timestamp, before)
			require.False(t, p.ci.Timestamp.After(after.Add(time.Millisecond)), "frame %d at %v, capture ended %v", i, p.ci.Timestamp, after)
			if i > 0 {
				require.True(t, p.ci.Timestamp.After(got[i-1].ci.Timestamp), "timestamps increase: %v then %v", got[i-1].ci.Timestamp, p.ci.Timestamp)
			}
		}
		require.Equal(t, uint64(5), s.Captured())
		require.Zero(t, s.Dropped())
	}
}

func TestFilters(t *testing.T) {
	h := NewHub()
	all := subscribe(t, h, Filter{})
	web := subscribe(t, h, Filter{Port: "web"})
	front := subscribe(t, h, Filter{Network: "front"})
	both := subscribe(t, h, Filter{Network: "front", Port: "gw/front"})
	uplink := subscribe(t, h, Filter{Port: "uplink"})

	seen := []struct{ network, port string }{
		{"front", "web"}, {"front", "api"}, {"front", "gw/front"},
		{"back", "db"}, {"back", "gw/back"}, {"", "uplink"}, {"front", "web"},
	}
	for i, s := range seen {
		h.Frame(s.network, s.port, testFrame(i, 64), packet.Offload{})
	}
	// ids writes what s has queued (its Count set to that) and returns
	// the frames' numbers.
	ids := func(s *Subscription) []int {
		var out []int
		s.filter.Count = len(s.queue)
		for _, p := range capture(t, context.Background(), s) {
			out = append(out, int(p.data[11]))
		}
		return out
	}
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6}, ids(all))
	require.Equal(t, []int{0, 6}, ids(web))
	require.Equal(t, []int{0, 1, 2, 6}, ids(front))
	require.Equal(t, []int{2}, ids(both))
	require.Equal(t, []int{5}, ids(uplink))

	require.True(t, Filter{}.Match("", "uplink"))
	require.False(t, Filter{Network: "front"}.Match("", "uplink"), "the uplink is on no network")
}

func TestCount(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{Count: 3})
	for i := range 10 {
		h.Frame("front", "web", testFrame(i, 60), packet.Offload{})
	}
	got := capture(t, context.Background(), s)
	require.Len(t, got, 3)
	for i, p := range got {
		require.Equal(t, testFrame(i, 60), p.data)
	}
	require.Zero(t, s.Dropped(), "frames beyond Count are not drops")
	require.Equal(t, uint64(3), s.Captured())
}

func TestSnaplen(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{Count: 1})
	big := testFrame(7, 70000) // a GSO super-frame of an offloading TAP
	h.Frame("front", "web", big, packet.Offload{})
	got := capture(t, context.Background(), s)
	require.Len(t, got, 1)
	require.Equal(t, 70000, got[0].ci.Length)
	require.Equal(t, Snaplen, got[0].ci.CaptureLength)
	require.Equal(t, big[:Snaplen], got[0].data)
}

// TestSlowReaderDrops: a reader that never reads costs the datapath no
// waiting and no allocation, its frames are dropped and counted, and what
// it holds stays bounded.
func TestSlowReaderDrops(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{})
	f := testFrame(1, 1514)
	const n = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			h.Frame("front", "web", f, packet.Offload{})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Frame blocked on a subscription nobody reads")
	}
	require.Equal(t, QueueFrames, len(s.queue))
	require.Equal(t, uint64(n-QueueFrames), s.Dropped())
	require.Equal(t, int64(QueueFrames*len(f)), s.queued.Load())

	allocs := testing.AllocsPerRun(1000, func() { h.Frame("front", "web", f, packet.Offload{}) })
	require.Zero(t, allocs, "dropping allocates nothing")
	require.Equal(t, uint64(n-QueueFrames+1001), s.Dropped())

	// Big frames hit the byte budget before the frame budget.
	big := subscribe(t, h, Filter{Port: "uplink"})
	g := testFrame(2, 60000)
	for range 1000 {
		h.Frame("", "uplink", g, packet.Offload{})
	}
	require.LessOrEqual(t, big.queued.Load(), int64(QueueBytes))
	require.Equal(t, QueueBytes/len(g), len(big.queue))
	require.Equal(t, uint64(1000-QueueBytes/len(g)), big.Dropped())

	// The reader catches up: the queue drains, new frames get through.
	big.Close()
	require.Zero(t, big.queued.Load(), "Close releases the queue")
	s.filter.Count = QueueFrames + 1
	var buf bytes.Buffer
	errc := make(chan error, 1)
	go func() { errc <- s.WritePcap(context.Background(), &buf) }()
	awaitReader(t, s) // the whole queue written: the next frame fits
	h.Frame("front", "web", testFrame(9, 60), packet.Offload{})
	require.NoError(t, <-errc)
	got := decode(t, buf.Bytes())
	require.Len(t, got, QueueFrames+1)
	require.Equal(t, testFrame(9, 60), got[QueueFrames].data)
	require.Zero(t, s.queued.Load())
}

func TestEndsOnContextAndClose(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var buf bytes.Buffer
	go func() { errc <- s.WritePcap(ctx, &buf) }()
	awaitReader(t, s)
	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WritePcap did not end with its context")
	}
	require.Empty(t, decode(t, buf.Bytes()), "a valid, empty pcap file")

	s2 := subscribe(t, h, Filter{})
	go func() { errc <- s2.WritePcap(context.Background(), io.Discard) }()
	awaitReader(t, s2)
	s2.Close()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WritePcap did not end on Close")
	}
	require.ErrorIs(t, s2.WritePcap(context.Background(), io.Discard), ErrClosed)
	s2.Close() // again: harmless

	require.True(t, h.Active())
	s.Close()
	require.False(t, h.Active(), "inactive once every capture is closed")
	h.Frame("front", "web", testFrame(1, 60), packet.Offload{}) // nobody: nothing happens
}

// flushWriter counts flushes and fails writes once told to.
type flushWriter struct {
	bytes.Buffer
	flushes int
	fail    bool
}

func (w *flushWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errors.New("broken pipe")
	}
	return w.Buffer.Write(p)
}

func (w *flushWriter) Flush() error { w.flushes++; return nil }

func TestFlushAndWriteError(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{Count: 2})
	h.Frame("front", "web", testFrame(1, 60), packet.Offload{})
	w := &flushWriter{}
	errc := make(chan error, 1)
	go func() { errc <- s.WritePcap(context.Background(), w) }()
	awaitReader(t, s) // frame 1 written, the queue found empty
	h.Frame("front", "web", testFrame(2, 60), packet.Offload{})
	require.NoError(t, <-errc)
	// The header, the queue found empty after frame 1, and the end.
	require.GreaterOrEqual(t, w.flushes, 3)
	require.Len(t, decode(t, w.Bytes()), 2)

	s2 := subscribe(t, h, Filter{})
	h.Frame("front", "web", testFrame(1, 60), packet.Offload{})
	err := s2.WritePcap(context.Background(), &flushWriter{fail: true})
	require.ErrorContains(t, err, "broken pipe")
}

func TestSubscribeErrors(t *testing.T) {
	var h Hub // the zero value works
	h.Frame("front", "web", testFrame(1, 60), packet.Offload{})
	_, err := h.Subscribe(Filter{Count: -1})
	require.Error(t, err)
	for range MaxSubscriptions {
		subscribe(t, &h, Filter{})
	}
	_, err = h.Subscribe(Filter{})
	require.ErrorContains(t, err, "too many captures")
}

// TestConcurrent runs ports' goroutines, captures coming and going, and
// readers at once, for the race detector.
func TestConcurrent(t *testing.T) {
	h := NewHub()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := testFrame(p, 100)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if h.Active() {
					h.Frame("front", fmt.Sprint("p", p), f, packet.Offload{})
				}
			}
		}()
	}
	for i := range 20 {
		s, err := h.Subscribe(Filter{Port: fmt.Sprint("p", i%4), Count: 50})
		require.NoError(t, err)
		got := capture(t, context.Background(), s)
		require.Len(t, got, 50)
		for _, p := range got {
			require.Equal(t, byte(i%4), p.data[11])
		}
		for j := 1; j < len(got); j++ {
			require.False(t, got[j].ci.Timestamp.Before(got[j-1].ci.Timestamp))
		}
		s.Close()
	}
	close(stop)
	wg.Wait()
	require.False(t, h.Active())
}

// BenchmarkFrameIdle is what the datapath pays per frame with nobody
// capturing.
func BenchmarkFrameIdle(b *testing.B) {
	h := NewHub()
	f := testFrame(1, 1514)
	b.ReportAllocs()
	for b.Loop() {
		if h.Active() {
			h.Frame("front", "web", f, packet.Offload{})
		}
	}
}

// BenchmarkFrameCaptured is the whole cost of one captured frame, queued
// and written as pcap, in one goroutine so that nothing is dropped.
func BenchmarkFrameCaptured(b *testing.B) {
	h := NewHub()
	s, err := h.Subscribe(Filter{})
	require.NoError(b, err)
	defer s.Close()
	out, err := s.newStream(io.Discard)
	require.NoError(b, err)
	f := testFrame(1, 1514)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		if h.Active() {
			h.Frame("front", "web", f, packet.Offload{})
		}
		if len(s.queue) >= QueueFrames/2 {
			for len(s.queue) > 0 {
				if err := out.write(<-s.queue); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	require.Zero(b, s.Dropped())
}

// BenchmarkFrameDropped is the cost of a frame for a capture whose reader
// does not keep up.
func BenchmarkFrameDropped(b *testing.B) {
	h := NewHub()
	s, err := h.Subscribe(Filter{})
	require.NoError(b, err)
	defer s.Close()
	f := testFrame(1, 1514)
	for range QueueFrames {
		h.Frame("front", "web", f, packet.Offload{})
	}
	b.ReportAllocs()
	for b.Loop() {
		if h.Active() {
			h.Frame("front", "web", f, packet.Offload{})
		}
	}
}

// A super-frame is captured as the segments a wire would carry, each with
// complete, valid checksums, like tcpdump on a NIC without offloads.
func TestSuperFrameCapturedAsSegments(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{Count: 3})
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 1, DstPort: 2, Seq: 100, ACK: true, Window: 9}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, tcp, gopacket.Payload(bytes.Repeat([]byte("x"), 2500))))
	f := buf.Bytes()
	ip4 := packet.IPv4(f[14:])
	ip4.SetHeaderChecksum()
	l4 := f[34:]
	sum := packet.PseudoHeaderSum(ip4.Src(), ip4.Dst(), packet.ProtoTCP, uint16(len(l4)))
	packet.TCP(l4).SetChecksum(^packet.Checksum(nil, sum))
	h.Frame("front", "web", f, packet.Offload{Flags: packet.VnetNeedsCsum, GSOType: packet.GSOTCPv4, GSOSize: 1000, CsumStart: 34, CsumOffset: 16})

	got := capture(t, context.Background(), s)
	require.Len(t, got, 3)
	for i, c := range got {
		p := gopacket.NewPacket(c.data, layers.LayerTypeEthernet, gopacket.Default)
		seg := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		require.EqualValues(t, 100+1000*i, seg.Seq)
		require.Len(t, seg.Payload, min(1000, 2500-1000*i))
		gip := packet.IPv4(c.data[14:])
		require.True(t, gip.HeaderChecksumValid())
		require.Zero(t, packet.Checksum(gip.Payload(), packet.PseudoHeaderSum(gip.Src(), gip.Dst(), packet.ProtoTCP, uint16(len(gip.Payload())))))
	}
}

// A frame whose offloads do not fit it is recorded as it came.
func TestMalformedOffloadCapturedRaw(t *testing.T) {
	h := NewHub()
	s := subscribe(t, h, Filter{Count: 1})
	f := testFrame(1, 60)
	h.Frame("front", "web", f, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: 200, CsumOffset: 16})
	got := capture(t, context.Background(), s)
	require.Len(t, got, 1)
	require.Equal(t, f, got[0].data)
}
