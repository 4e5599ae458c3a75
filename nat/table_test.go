package nat

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

func maxConns(n int) func(*config.Plan) {
	return func(p *config.Plan) { p.Defaults.ConntrackMax = n }
}

// fill opens n masqueraded UDP flows from web to remote:53, replied when
// replied is set.
func fill(g *rig, n int, replied bool) {
	g.t.Helper()
	for i := range n {
		sport := uint16(10000 + i)
		g.forward("front", UplinkName, udpPkt(g.t, ap(webAddr, sport), ap(remoteAddr, 53), "q"))
		if replied {
			g.forward(UplinkName, "front", udpPkt(g.t, ap(remoteAddr, 53), ap(uplinkAddr, sport), "a"))
		}
	}
	require.Equal(g.t, n, g.tr.Table.Len())
}

func TestConntrackMaxEarlyDrop(t *testing.T) {
	g := newRig(t, maxConns(1000))
	fill(g, 1000, false)
	out := g.forward("front", UplinkName, udpPkt(t, ap(web2Addr, 7), ap(remoteAddr, 53), "new"))
	requireFlow(t, out, ap(uplinkAddr, 7), ap(remoteAddr, 53))
	require.Equal(t, 1000, g.tr.Table.Len())
	require.Len(t, g.tr.Table.Entries(), 1000)
	require.EqualValues(t, 1, g.tr.Table.EarlyDropped.Load())
	require.Zero(t, g.tr.Table.Dropped.Load())
	require.Equal(t, ap(web2Addr, 7).Addr(), g.entry(ap(web2Addr, 7)).Orig.Src)
}

func TestConntrackMaxRefusesWhenAllReplied(t *testing.T) {
	g := newRig(t, maxConns(1000))
	fill(g, 1000, true)
	r := g.pass("front", udpPkt(t, ap(web2Addr, 7), ap(remoteAddr, 53), "new"))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.ConntrackFull}, r.v)
	r = g.pass("front", tcpPkt(t, ap(web2Addr, 8), ap(remoteAddr, 443), fSYN, ""))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.ConntrackFull}, r.v)
	require.EqualValues(t, 2, g.tr.Table.Dropped.Load())
	require.Zero(t, g.tr.Table.EarlyDropped.Load())
	require.Equal(t, 1000, g.tr.Table.Len())

	// established flows keep working both ways
	out := g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 10500), ap(remoteAddr, 53), "q"))
	requireFlow(t, out, ap(uplinkAddr, 10500), ap(remoteAddr, 53))
	in := g.forward(UplinkName, "front", udpPkt(t, ap(remoteAddr, 53), ap(uplinkAddr, 10999), "a"))
	requireFlow(t, in, ap(remoteAddr, 53), ap(webAddr, 10999))

	// once some expire, there is room again
	g.clk.Advance(udpStreamTimeout + time.Second)
	g.forward("front", UplinkName, udpPkt(t, ap(web2Addr, 7), ap(remoteAddr, 53), "new"))
}

// Connections that expired but were not swept yet do not count against
// the limit: a new connection takes the place of one.
func TestConntrackMaxReclaimsExpired(t *testing.T) {
	g := newRig(t, maxConns(1000))
	fill(g, 1000, true)
	g.clk.Advance(udpStreamTimeout + time.Second)
	require.Empty(t, g.tr.Table.Entries())
	require.Equal(t, 1000, g.tr.Table.Len(), "not swept yet")
	g.forward("front", UplinkName, udpPkt(t, ap(web2Addr, 7), ap(remoteAddr, 53), "new"))
	require.Len(t, g.tr.Table.Entries(), 1)
	require.LessOrEqual(t, g.tr.Table.Len(), 1000)
	require.Zero(t, g.tr.Table.Dropped.Load())
}

// A connection whose two tuples hash to the same shard is seen twice by a
// sweep; it is still one expiry. With 1000 flows and 256 shards some always
// share one.
func TestSweepCountsEachConnectionOnce(t *testing.T) {
	g := newRig(t, maxConns(2000))
	fill(g, 1000, true)
	g.clk.Advance(udpStreamTimeout + time.Second)
	g.tr.Table.Sweep(numShards)
	require.Zero(t, g.tr.Table.Len())
	require.EqualValues(t, 1000, g.tr.Table.Expired.Load())
}

func TestSYNFloodKeepsTableBoundedAndFlowsAlive(t *testing.T) {
	g := newRig(t, maxConns(1000))
	c := newTCPConn(g)
	c.handshake()
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	// SYNs from many sources beyond the host to the published port: built
	// once, then only the source changes (checksums do not matter here)
	tmpl := tcpPkt(t, ap(remoteAddr, 1), ap(uplinkAddr, 8080), fSYN, "")
	buf := make([]byte, len(tmpl))
	accepted := 0
	for i := range n {
		copy(buf, tmpl)
		packet.IPv4(buf).SetSrc([4]byte{203, 0, 113, byte(i >> 16)}) // 203.0.113.x
		packet.Ports(buf[20:]).SetSrc(uint16(i))
		if g.pass(UplinkName, buf).v.Action == Accept {
			accepted++
		}
		if i%10_000 == 0 {
			require.LessOrEqual(t, g.tr.Table.Len(), 1000)
			c.out(fACK|fPSH, "still there?")
			c.in(fACK|fPSH, "yes")
		}
	}
	require.LessOrEqual(t, g.tr.Table.Len(), 1000)
	require.Equal(t, n, accepted, "each SYN pushes out an unreplied one")
	require.EqualValues(t, n-999, g.tr.Table.EarlyDropped.Load())
	c.out(fACK|fPSH, "bye")
	c.in(fACK|fPSH, "bye")
	c.requireState(TCPEstablished)
}

func TestEntries(t *testing.T) {
	g := newRig(t)
	// a masqueraded TCP connection, established, with data both ways
	c := newTCPConn(g)
	syn := tcpPkt(t, c.cli, c.srv, fSYN, "")
	synack := tcpPkt(t, c.srv, c.masq, fSYN|fACK, "")
	data := tcpPkt(t, c.cli, c.srv, fACK|fPSH, "hello")
	c.out(fSYN, "")
	c.in(fSYN|fACK, "")
	c.out(fACK|fPSH, "hello")
	// a DNATed UDP flow, unreplied
	g.forward(UplinkName, "front", udpPkt(t, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q"))
	// a ping
	g.forward("front", UplinkName, ping(t, web2Addr, remoteAddr, 5, 1, false))
	g.clk.Advance(time.Second)

	es := g.tr.Table.Entries()
	require.Len(t, es, 3)
	// sorted by protocol, then original tuple
	require.Equal(t, []string{"icmp", "tcp", "udp"}, []string{es[0].Proto, es[1].Proto, es[2].Proto})

	require.Equal(t, Entry{
		Family: "ipv4", Proto: "icmp", Orig: TupleView{Src: web2Addr, Dst: remoteAddr, Sport: 5, Dport: 5},
		Reply: TupleView{Src: remoteAddr, Dst: uplinkAddr, Sport: 5, Dport: 5},
		SNAT:  true, Timeout: clock.Duration(icmpTimeout - time.Second),
		Packets: [2]uint64{1, 0}, Bytes: [2]uint64{uint64(len(ping(t, web2Addr, remoteAddr, 5, 1, false))), 0},
	}, es[0])
	require.Equal(t, Entry{
		Family: "ipv4", Proto: "tcp", State: "ESTABLISHED",
		Orig:  TupleView{Src: webAddr, Dst: remoteAddr, Sport: 40000, Dport: 443},
		Reply: TupleView{Src: remoteAddr, Dst: uplinkAddr, Sport: 443, Dport: 40000},
		SNAT:  true, Replied: true, Assured: true, Timeout: clock.Duration(tcpTimeouts[TCPEstablished] - time.Second),
		Packets: [2]uint64{2, 1}, Bytes: [2]uint64{uint64(len(syn) + len(data)), uint64(len(synack))},
	}, es[1])
	require.Equal(t, Entry{
		Family: "ipv4", Proto: "udp", Orig: TupleView{Src: hostAddr, Dst: uplinkAddr, Sport: 3000, Dport: 5353},
		Reply: TupleView{Src: webAddr, Dst: hostAddr, Sport: 53, Dport: 3000},
		DNAT:  true, Timeout: clock.Duration(udpTimeout - time.Second),
		Packets: [2]uint64{1, 0}, Bytes: [2]uint64{uint64(len(udpPkt(t, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q"))), 0},
	}, es[2])
	conn, _, ok := g.tr.Table.Lookup(Tuple{Src: webAddr.As4(), Dst: remoteAddr.As4(), Sport: 40000, Dport: 443, Proto: 6})
	require.True(t, ok)
	require.Equal(t, "tcp src=172.20.0.10 dst=198.51.100.7 sport=40000 dport=443", conn.orig.String())
}

// Connections whose tuples are taken over by new ones once expired, on
// many goroutines at once: the table must neither deadlock nor lose count.
func TestTableConcurrentReplacement(t *testing.T) {
	clk := &clock.Fake{}
	tb := NewTable(0, clk)
	const n = 20_000
	mk := func(i, gen int) *Conn {
		c := &Conn{orig: Tuple{Src: [4]byte{10, 0, byte(i >> 8), byte(i)}, Dst: [4]byte{10, 1, 0, 1}, Sport: 1000, Dport: 53, Proto: 17}}
		c.reply = Tuple{Src: c.orig.Dst, Dst: [4]byte{10, 2, byte(gen), 1}, Sport: 53, Dport: uint16(i), Proto: 17}
		return c
	}
	for i := range n {
		require.True(t, tb.insert(mk(i, 0)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for gen := 1; gen <= 3; gen++ {
			clk.Advance(time.Hour) // everything in the table is expired
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < n; i += 8 {
						tb.insert(mk(i, gen))
					}
				})
			}
			wg.Go(func() { tb.Sweep(numShards) })
			wg.Go(func() { _ = tb.Entries() })
			wg.Wait()
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("deadlock: inserts replacing expired connections never finished")
	}
	require.Equal(t, n, tb.Len())
	require.Len(t, tb.Entries(), n)
}

// Many goroutines forwarding their own flows through one tracker while the
// table is swept and listed: for the race detector.
func TestTrackerConcurrentFlows(t *testing.T) {
	g := newRig(t, maxConns(500))
	tmpls := map[string][]byte{
		"out": udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "q"),
		"in":  udpPkt(t, ap(remoteAddr, 53), ap(uplinkAddr, 1), "a"),
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			out, in := make([]byte, len(tmpls["out"])), make([]byte, len(tmpls["in"]))
			for i := range 2000 {
				port := uint16(1024 + w*2000 + i)
				copy(out, tmpls["out"])
				packet.Ports(out[20:]).SetSrc(port)
				var f Flow
				if g.tr.Prerouting(&f, out, "front").Action != Accept ||
					g.tr.Filter(&f, Forward, UplinkName).Action != Accept ||
					g.tr.Postrouting(&f, out, UplinkName, uplinkAddr.As4()).Action != Accept {
					continue
				}
				copy(in, tmpls["in"])
				copy(in[22:24], out[20:22]) // to the port it left with
				if g.tr.Prerouting(&f, in, UplinkName).Action == Accept {
					g.tr.Filter(&f, Forward, "front")
					g.tr.Postrouting(&f, in, "front", frontGW.As4())
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			g.tr.Table.Sweep(16)
			_ = g.tr.Table.Entries()
			_ = g.tr.Rules.List()
		}
	})
	wg.Wait()
	require.LessOrEqual(t, g.tr.Table.Len(), 500+8, "the limit holds, give or take the racing inserts")
}

func TestTupleString(t *testing.T) {
	tu := Tuple{Src: webAddr.As4(), Dst: remoteAddr.As4(), Sport: 1, Dport: 2, Proto: 47}
	require.Equal(t, "proto-47 src=172.20.0.10 dst=198.51.100.7 sport=1 dport=2", tu.String())
	require.Equal(t, Tuple{Src: remoteAddr.As4(), Dst: webAddr.As4(), Sport: 2, Dport: 1, Proto: 47}, tu.Reverse())
}
