package nat

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
)

// established sets up a masqueraded TCP connection from web to remote:443
// and returns a segment of each direction, as they arrive.
func established(tb testing.TB, g *rig) (out, in []byte) {
	c := newTCPConn(g)
	c.handshake()
	return tcpPkt(tb, c.cli, c.srv, fACK|fPSH, "0123456789abcdef"),
		tcpPkt(tb, c.srv, c.masq, fACK|fPSH, "fedcba9876543210")
}

// hooks runs one packet through prerouting, forward and postrouting as the
// router does for a forwarded packet, without the test's bookkeeping.
// hooks6 is its IPv6 twin, kept apart (as the benchmarks that call them)
// so that what is timed holds no family dispatch of the harness's own:
// rig.run serves the tests.
func hooks(tr *Tracker, ip []byte, in, out string, outAddr [4]byte) Verdict {
	var f Flow
	if v := tr.Prerouting(&f, ip, in); v.Action != Accept {
		return v
	}
	if v := tr.Filter(&f, Forward, out); v.Action != Accept {
		return v
	}
	return tr.Postrouting(&f, ip, out, outAddr)
}

func TestEstablishedFlowAllocatesNothing(t *testing.T) {
	g := newRig(t)
	outPkt, inPkt := established(t, g)
	buf := make([]byte, len(outPkt))
	front, uplink := frontGW.As4(), uplinkAddr.As4()
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, outPkt)
		if hooks(g.tr, buf, "front", UplinkName, uplink).Action != Accept {
			panic("dropped")
		}
		copy(buf, inPkt)
		if hooks(g.tr, buf, UplinkName, "front", front).Action != Accept {
			panic("dropped")
		}
	})
	require.Zero(t, allocs, "allocations per packet pair")
	// and it did translate
	requireFlow(t, buf, ap(remoteAddr, 443), ap(webAddr, 40000))
	requireChecksums(t, buf)
}

// BenchmarkNATEstablished is the per-packet cost of the hooks for a
// masqueraded TCP connection, both directions alternating.
func BenchmarkNATEstablished(b *testing.B) {
	g := newRig(b)
	outPkt, inPkt := established(b, g)
	buf := make([]byte, len(outPkt))
	front, uplink := frontGW.As4(), uplinkAddr.As4()
	b.SetBytes(int64(len(outPkt)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i&1 == 0 {
			copy(buf, outPkt)
			hooks(g.tr, buf, "front", UplinkName, uplink)
		} else {
			copy(buf, inPkt)
			hooks(g.tr, buf, UplinkName, "front", front)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/packet")
}

// BenchmarkConntrackInsert is the cost of a new connection: a masqueraded
// UDP flow per operation, through all the hooks.
func BenchmarkConntrackInsert(b *testing.B) {
	g := newRig(b, maxConns(0))
	tmpl := udpPkt(b, ap(webAddr, 1), ap(remoteAddr, 53), "q")
	buf := make([]byte, len(tmpl))
	uplink := uplinkAddr.As4()
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		copy(buf, tmpl)
		buf[18] = byte(i >> 16) // to 198.51.x.7: masquerade has 64k ports per peer
		packet.Ports(buf[20:]).SetSrc(uint16(i))
		if hooks(g.tr, buf, "front", UplinkName, uplink).Action != Accept {
			b.Fatal("refused")
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "inserts/s")
}

// BenchmarkConntrackMemory reports the heap a connection costs in a table
// of 1,000,000 masqueraded UDP flows.
func BenchmarkConntrackMemory(b *testing.B) {
	const n = 1_000_000
	tmpl := udpPkt(b, ap(webAddr, 1), ap(remoteAddr, 53), "q")
	buf := make([]byte, len(tmpl))
	uplink := uplinkAddr.As4()
	for b.Loop() {
		g := newRig(b, maxConns(0))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range uint32(n) {
			copy(buf, tmpl)
			buf[18] = byte(i >> 16) // to 198.51.x.7: masquerade has 64k ports per peer
			packet.Ports(buf[20:]).SetSrc(uint16(i))
			if hooks(g.tr, buf, "front", UplinkName, uplink).Action != Accept {
				b.Fatal("refused")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if g.tr.Table.Len() != n {
			b.Fatalf("%d connections", g.tr.Table.Len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		g.clk.Advance(time.Hour)
		runtime.KeepAlive(g)
	}
}

// largeTable is the connection count of the scale benchmarks (SPEC: 1 M
// connections in conntrack).
const largeTable = 1_000_000

// fillConns opens n masqueraded UDP flows from web (to 198.51.x.7:53,
// x < 16, never the remote the benchmarks' own flows use) through the
// hooks, and returns the heap they took.
func fillConns(b *testing.B, g *rig, n int) uint64 {
	tmpl := udpPkt(b, ap(webAddr, 1), ap(remoteAddr, 53), "q")
	buf := make([]byte, len(tmpl))
	uplink := uplinkAddr.As4()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range uint32(n) {
		copy(buf, tmpl)
		buf[18] = byte(i >> 16) // masquerade has 64k ports per peer
		packet.Ports(buf[20:]).SetSrc(uint16(i))
		if hooks(g.tr, buf, "front", UplinkName, uplink).Action != Accept {
			b.Fatal("refused")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if g.tr.Table.Len() < n {
		b.Fatalf("%d connections", g.tr.Table.Len())
	}
	return after.HeapAlloc - before.HeapAlloc
}

// BenchmarkConntrackScale runs an established flow through the hooks with
// the table holding only it (small) and with a million other connections
// (1M): nat is a masqueraded TCP connection to the uplink, both directions
// alternating (as BenchmarkNATEstablished), routed a UDP flow between two
// networks that neither isolate nor masquerade, both directions. The 1M
// runs report the heap a connection takes.
func BenchmarkConntrackScale(b *testing.B) {
	open := func(d *config.Plan) {
		d.Defaults.ConntrackMax = 0
		for i := range d.Networks {
			d.Networks[i].Isolate = false
		}
	}
	for _, size := range []int{0, largeTable} {
		name := "small"
		if size > 0 {
			name = "1M"
		}
		b.Run("nat/"+name, func(b *testing.B) {
			g := newRig(b, open)
			var heap uint64
			if size > 0 {
				heap = fillConns(b, g, size)
			}
			outPkt, inPkt := established(b, g)
			buf := make([]byte, len(outPkt))
			front, uplink := frontGW.As4(), uplinkAddr.As4()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i&1 == 0 {
					copy(buf, outPkt)
					hooks(g.tr, buf, "front", UplinkName, uplink)
				} else {
					copy(buf, inPkt)
					hooks(g.tr, buf, UplinkName, "front", front)
				}
				i++
			}
			// The loop's last packet may be either direction: check a
			// reply's translation, after the table saw them all.
			copy(buf, inPkt)
			hooks(g.tr, buf, UplinkName, "front", front)
			requireFlow(b, buf, ap(remoteAddr, 443), ap(webAddr, 40000))
			if size > 0 {
				b.ReportMetric(float64(heap)/float64(size), "bytes/conn")
			}
		})
		b.Run("routed/"+name, func(b *testing.B) {
			g := newRig(b, open)
			var heap uint64
			if size > 0 {
				heap = fillConns(b, g, size)
			}
			web, db := ap(webAddr, 5000), ap(dbAddr, 6000)
			out, in := udpPkt(b, web, db, "q"), udpPkt(b, db, web, "a")
			// Through the rig first: accepted, routed, not translated.
			requireFlow(b, g.forward("front", "back", slices.Clone(out)), web, db)
			requireFlow(b, g.forward("back", "front", slices.Clone(in)), db, web)
			buf := make([]byte, len(out))
			front, back := frontGW.As4(), backGW.As4()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var v Verdict
				if i&1 == 0 {
					copy(buf, out)
					v = hooks(g.tr, buf, "front", "back", back)
				} else {
					copy(buf, in)
					v = hooks(g.tr, buf, "back", "front", front)
				}
				if v.Action != Accept {
					b.Fatalf("dropped: %+v", v)
				}
				i++
			}
			if size > 0 {
				b.ReportMetric(float64(heap)/float64(size), "bytes/conn")
			}
		})
	}
}

// established6 sets up a masqueraded IPv6 TCP connection from web to
// remote6:443 and returns a segment of each direction, as they arrive.
func established6(tb testing.TB, g *rig) (out, in []byte) {
	cli, srv, masq := ap(web6, 40000), ap(remote6, 443), ap(uplink6, 40000)
	g.forward6("front", UplinkName, tcpPkt(tb, cli, srv, fSYN, ""))
	g.forward6(UplinkName, "front", tcpPkt(tb, srv, masq, fSYN|fACK, ""))
	g.forward6("front", UplinkName, tcpPkt(tb, cli, srv, fACK, ""))
	return tcpPkt(tb, cli, srv, fACK|fPSH, "0123456789abcdef"),
		tcpPkt(tb, srv, masq, fACK|fPSH, "fedcba9876543210")
}

// hooks6 is hooks for an IPv6 packet.
func hooks6(tr *Tracker, ip []byte, in, out string, outAddr [16]byte) Verdict {
	var f Flow
	if v := tr.Prerouting6(&f, ip, in); v.Action != Accept {
		return v
	}
	if v := tr.Filter(&f, Forward, out); v.Action != Accept {
		return v
	}
	return tr.Postrouting6(&f, ip, out, outAddr)
}

func TestEstablishedFlow6AllocatesNothing(t *testing.T) {
	g := newRig6(t)
	outPkt, inPkt := established6(t, g)
	buf := make([]byte, len(outPkt))
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, outPkt)
		if hooks6(g.tr, buf, "front", UplinkName, g.addr6(UplinkName)).Action != Accept {
			panic("dropped")
		}
		copy(buf, inPkt)
		if hooks6(g.tr, buf, UplinkName, "front", g.addr6("front")).Action != Accept {
			panic("dropped")
		}
	})
	require.Zero(t, allocs, "allocations per packet pair")
	requireFlow(t, buf, ap(remote6, 443), ap(web6, 40000))
	requireChecksums6(t, buf)
}

// BenchmarkNAT6Established is BenchmarkNATEstablished for IPv6: the
// per-packet cost of the hooks for a masqueraded (NAT66) TCP connection,
// both directions alternating.
func BenchmarkNAT6Established(b *testing.B) {
	g := newRig6(b)
	outPkt, inPkt := established6(b, g)
	buf := make([]byte, len(outPkt))
	front, uplink := g.addr6("front"), g.addr6(UplinkName)
	b.SetBytes(int64(len(outPkt)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i&1 == 0 {
			copy(buf, outPkt)
			hooks6(g.tr, buf, "front", UplinkName, uplink)
		} else {
			copy(buf, inPkt)
			hooks6(g.tr, buf, UplinkName, "front", front)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/packet")
}
