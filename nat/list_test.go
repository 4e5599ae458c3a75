package nat

import (
	"encoding/json"
	"errors"
	"net/netip"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// Each lists every live connection once, filtered on the server side like
// conntrack -L's options.
func TestEachFilters(t *testing.T) {
	g := newRig(t)
	c := newTCPConn(g)
	c.handshake()
	g.forward(UplinkName, "front", udpPkt(t, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q"))
	g.forward("front", UplinkName, ping(t, web2Addr, remoteAddr, 5, 1, false))
	g.forward("front", UplinkName, tcpPkt(t, ap(web2Addr, 41000), ap(remoteAddr, 80), fSYN, ""))
	count := func(f Filter) int {
		n := 0
		require.NoError(t, g.tr.Table.Each(f, func(*Entry) error { n++; return nil }))
		return n
	}
	require.Equal(t, 4, count(Filter{}))
	require.Equal(t, 2, count(Filter{Proto: packet.ProtoTCP}))
	require.Equal(t, 1, count(Filter{Proto: packet.ProtoUDP}))
	require.Equal(t, 1, count(Filter{Dport: 80}))
	require.Equal(t, 1, count(Filter{Proto: packet.ProtoTCP, Dport: 443}))
	require.Equal(t, 1, count(Filter{Sport: 3000}))
	require.Equal(t, 2, count(Filter{Src: web2Addr}))
	require.Equal(t, 3, count(Filter{Dst: remoteAddr}))
	require.Equal(t, 0, count(Filter{Dst: netip.MustParseAddr("::1")}))
	require.Equal(t, 1, count(Filter{State: "ESTABLISHED"}))
	require.Equal(t, 1, count(Filter{State: "SYN_SENT"}))
	require.Equal(t, 0, count(Filter{State: "TIME_WAIT"}))

	stop := errors.New("stop")
	n := 0
	require.ErrorIs(t, g.tr.Table.Each(Filter{}, func(*Entry) error { n++; return stop }), stop)
	require.Equal(t, 1, n)
}

// Listing a large table as JSON, entry by entry, costs memory for a shard,
// not for the table: with 200 000 connections (tens of MB as one JSON
// document), the live heap grows by a shard's worth while it runs.
func TestEachMemoryBounded(t *testing.T) {
	const n = 200_000
	g := newRig(t, maxConns(n))
	tmpl := udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "q")
	buf := make([]byte, len(tmpl))
	for i := range n {
		copy(buf, tmpl)
		packet.IPv4(buf).SetDst([4]byte{198, 51, 100, byte(i >> 16)}) // 198.51.100.x
		packet.Ports(buf[20:]).SetSrc(uint16(i))
		require.Equal(t, accept, g.pass("front", buf).v)
	}
	require.Equal(t, n, g.tr.Table.Len())

	var base, cur runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	peak := base.HeapAlloc
	listed := 0
	cw := &countWriter{}
	enc := json.NewEncoder(cw)
	require.NoError(t, g.tr.Table.Each(Filter{}, func(e *Entry) error {
		listed++
		if listed%20000 == 0 { // what is live, garbage aside
			runtime.GC()
			runtime.ReadMemStats(&cur)
			peak = max(peak, cur.HeapAlloc)
		}
		return enc.Encode(e)
	}))
	require.Equal(t, n, listed)
	require.Greater(t, cw.n, 30<<20, "the listing is large")
	t.Logf("%d entries, %d MB of JSON, live heap grew by %d KB at most", listed, cw.n>>20, (peak-base.HeapAlloc)>>10)
	require.Less(t, peak-base.HeapAlloc, uint64(4<<20), "the heap does not grow with the listing")
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
