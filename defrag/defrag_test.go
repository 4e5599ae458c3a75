package defrag

import (
	"bytes"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// datagram is an Ethernet frame holding a UDP datagram of n payload bytes,
// built with gopacket.
func datagram(t testing.TB, id uint16, n int) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{172, 20, 0, 10}, DstIP: net.IP{10, 250, 0, 1}}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = byte(i * 7)
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(pl)))
	return append([]byte(nil), buf.Bytes()...)
}

// fragments splits a frame's IPv4 datagram into fragments carrying at most
// chunk payload bytes each (a multiple of 8), as a host would.
func fragments(t testing.TB, frame []byte, chunk int) [][]byte {
	const eh = packet.EthernetHeaderLen
	ip := packet.IPv4(frame[eh:])
	hl := ip.HeaderLen()
	data := ip[hl:ip.TotalLen()]
	var out [][]byte
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		f := append(append([]byte(nil), frame[:eh+hl]...), data[off:end]...)
		fip := packet.IPv4(f[eh:])
		fo := uint16(off / 8)
		if end < len(data) {
			fo |= packet.IPv4MoreFragments
		}
		fip.SetFlagsOffset(fo)
		fip.SetTotalLen(uint16(hl + end - off))
		fip.SetHeaderChecksum()
		out = append(out, f)
	}
	require.Greater(t, len(out), 1)
	return out
}

func newR(cfg Config) (*Reassembler, *clock.Fake, *stats.Port) {
	clk := &clock.Fake{}
	clk.Advance(time.Hour)
	return New(cfg, clk), clk, &stats.Port{}
}

// feed adds frags in order and returns the datagram the last one made
// whole (nil if none), copied out of its pooled buffer.
func feed(r *Reassembler, st *stats.Port, frags [][]byte) []byte {
	var got []byte
	for _, f := range frags {
		if d := r.Add(f, st); d != nil {
			got = append([]byte(nil), *d...)
			r.Release(d)
		}
	}
	return got
}

func TestReassemblesInAnyOrder(t *testing.T) {
	for _, n := range []int{1473, 6000, 65507} {
		want := datagram(t, 7, n)
		frags := fragments(t, want, 1480)
		for name, order := range map[string]func([][]byte){
			"in order": func([][]byte) {},
			"reversed": func(f [][]byte) {
				for i, j := 0, len(f)-1; i < j; i, j = i+1, j-1 {
					f[i], f[j] = f[j], f[i]
				}
			},
			"shuffled": func(f [][]byte) { rand.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] }) },
		} {
			r, _, st := newR(Config{})
			fs := append([][]byte(nil), frags...)
			order(fs)
			got := feed(r, st, fs)
			require.Equal(t, want, got, "%d bytes, %s", n, name)
			require.True(t, packet.IPv4(got[packet.EthernetHeaderLen:]).HeaderChecksumValid())
			require.Zero(t, r.Mem())
			require.Zero(t, r.Pending())
			require.EqualValues(t, 1, r.Reassembled.Load())
			require.Empty(t, st.Snapshot().Drops)
		}
	}
}

func TestDuplicateDroppedAlone(t *testing.T) {
	r, _, st := newR(Config{})
	want := datagram(t, 8, 4000)
	frags := fragments(t, want, 1480)
	got := feed(r, st, [][]byte{frags[0], frags[1], frags[1], frags[2]})
	require.Equal(t, want, got)
	require.EqualValues(t, 1, st.Dropped(stats.FragDup))
}

func TestOverlapDropsTheDatagram(t *testing.T) {
	r, _, st := newR(Config{})
	frame := datagram(t, 9, 4000)
	frags := fragments(t, frame, 1480)
	// a fragment covering the second half of the first and the start of the second
	odd := fragments(t, frame, 744)[1]
	require.True(t, feed(r, st, [][]byte{frags[0], odd, frags[1], frags[2]}) == nil)
	require.EqualValues(t, 2, st.Dropped(stats.FragOverlap), "the overlapping one and the one held")
	require.Equal(t, 1, r.Pending(), "the later fragments start the datagram over")
	require.Equal(t, frame, feed(r, st, [][]byte{frags[0]}), "sent again, it gets through")
}

func TestOversizeAndInconsistentEnds(t *testing.T) {
	r, _, st := newR(Config{})
	frame := datagram(t, 10, 3000)
	frags := fragments(t, frame, 1480)
	// a fragment reaching beyond 65535 bytes
	big := append([]byte(nil), frags[1]...)
	ip := packet.IPv4(big[packet.EthernetHeaderLen:])
	ip.SetFlagsOffset(packet.IPv4MoreFragments | 8180) // 65440 + 1480 > 65535
	ip.SetHeaderChecksum()
	require.True(t, feed(r, st, [][]byte{frags[0], big}) == nil)
	require.EqualValues(t, 2, st.Dropped(stats.FragOversize))
	require.Zero(t, r.Pending())

	// two last fragments that disagree on the end
	last := frags[len(frags)-1]
	short := append([]byte(nil), last[:len(last)-8]...)
	ip = packet.IPv4(short[packet.EthernetHeaderLen:])
	ip.SetTotalLen(uint16(len(ip)))
	ip.SetHeaderChecksum()
	require.True(t, feed(r, st, [][]byte{last, short}) == nil)
	require.EqualValues(t, 4, st.Dropped(stats.FragOversize))
	require.Zero(t, r.Pending())
	require.Zero(t, r.Mem())
}

func TestTimeout(t *testing.T) {
	r, clk, st := newR(Config{})
	frags := fragments(t, datagram(t, 11, 6000), 1480)
	require.True(t, feed(r, st, frags[:3]) == nil)
	clk.Advance(29 * time.Second)
	r.Tick()
	require.Equal(t, 1, r.Pending())
	clk.Advance(time.Second)
	r.Tick()
	require.Zero(t, r.Pending())
	require.Zero(t, r.Mem())
	require.EqualValues(t, 3, st.Dropped(stats.FragTimeout))
	require.EqualValues(t, 1, r.Expired.Load())
	// the rest, late, starts over and never completes alone
	require.True(t, feed(r, st, frags[3:]) == nil)
	require.Equal(t, 1, r.Pending())
}

func TestDontFragmentFromLargestFragment(t *testing.T) {
	r, _, st := newR(Config{})
	frags := fragments(t, datagram(t, 12, 4000), 1480)
	for _, f := range frags {
		ip := packet.IPv4(f[packet.EthernetHeaderLen:])
		ip.SetFlagsOffset(ip.FlagsOffset() | packet.IPv4DontFragment)
		ip.SetHeaderChecksum()
	}
	got := feed(r, st, frags)
	require.True(t, packet.IPv4(got[packet.EthernetHeaderLen:]).DontFragment())
}

// A flood of fragments that never complete keeps the memory held within
// the bound; what does not fit is refused and counted, and a datagram
// arriving whole in the meantime is reassembled once memory is free again.
func TestFragmentFloodStaysWithinBound(t *testing.T) {
	const bound = 1 << 20
	r, clk, st := newR(Config{HighThresh: bound})
	tmpl := fragments(t, datagram(t, 0, 3000), 1480)[0]
	f := append([]byte(nil), tmpl...)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 200_000
	for i := range n {
		ip := packet.IPv4(f[packet.EthernetHeaderLen:])
		ip.SetID(uint16(i))
		ip.SetSrc([4]byte{0xcb, 0, 0, byte(i >> 16)}) // a new datagram each time
		ip.SetHeaderChecksum()
		require.True(t, r.Add(f, st) == nil)
		if i%1000 == 0 {
			require.LessOrEqual(t, r.Mem(), bound)
		}
	}
	require.LessOrEqual(t, r.Mem(), bound)
	held := r.Pending()
	require.Equal(t, held, bound/(1480+fragOverhead))
	require.EqualValues(t, n-held, st.Dropped(stats.FragMemory))
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(4*bound), "heap stays near the bound")

	// once they time out, memory is free and datagrams get through
	clk.Advance(DefaultTimeout)
	r.Tick()
	require.Zero(t, r.Mem())
	want := datagram(t, 99, 6000)
	require.Equal(t, want, feed(r, st, fragments(t, want, 1480)))
}

func TestTruncatedFragmentCounted(t *testing.T) {
	r, _, st := newR(Config{})
	f := fragments(t, datagram(t, 13, 3000), 1480)[0]
	f = f[:packet.EthernetHeaderLen+20+7] // fewer than 8 bytes in a non-last fragment
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	ip.SetTotalLen(27)
	ip.SetHeaderChecksum()
	require.True(t, r.Add(f, st) == nil)
	require.EqualValues(t, 1, st.Dropped(stats.Truncated))
	require.Zero(t, r.Pending())
}

// Fragments of many datagrams arriving on several goroutines at once, in
// any order: every datagram comes out whole, once.
func TestConcurrentReassembly(t *testing.T) {
	r, _, _ := newR(Config{})
	const workers, per = 4, 200
	type job struct {
		want  []byte
		frags [][]byte
	}
	jobs := make([][]job, workers) // built here: require only on the test's goroutine
	for w := range workers {
		for i := range per {
			want := datagram(t, uint16(w*per+i), 3000+i)
			frags := fragments(t, want, 1480)
			rand.Shuffle(len(frags), func(a, b int) { frags[a], frags[b] = frags[b], frags[a] })
			jobs[w] = append(jobs[w], job{want, frags})
		}
	}
	done := make(chan int, workers)
	for w := range workers {
		go func() {
			st := &stats.Port{}
			got := 0
			for _, j := range jobs[w] {
				if d := feed(r, st, j.frags); bytes.Equal(d, j.want) {
					got++
				}
			}
			done <- got
		}()
	}
	total := 0
	for range workers {
		total += <-done
	}
	require.Equal(t, workers*per, total)
	require.Zero(t, r.Mem())
	require.EqualValues(t, workers*per, r.Reassembled.Load())
}
