package nat

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// A TCP connection is assured when its handshake completes, not when the
// SYN/ACK comes back: a SYN flood answered by a listener on a published
// port leaves SYN_RECV entries that early drop takes, so new connections
// keep getting in (Linux's tcp_packet and early_drop).
func TestSYNFloodOnListeningPublishedPort(t *testing.T) {
	const max = 1000
	g := newRig(t, maxConns(max))
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	syn := tcpPkt(t, ap(remoteAddr, 1), ap(uplinkAddr, 8080), fSYN, "")
	synAck := tcpPkt(t, ap(webAddr, 80), ap(remoteAddr, 1), fSYN|fACK, "")
	in, out := make([]byte, len(syn)), make([]byte, len(synAck))
	for i := range n {
		src := 0xcb000000 | uint32(i) // spoofed sources in 203.0.0.0/8
		copy(in, syn)
		packet.IPv4(in).SetSrc([4]byte{byte(src >> 24), byte(src >> 16), byte(src >> 8), byte(src)})
		packet.Ports(in[20:]).SetSrc(uint16(1024 + i%60000))
		r := g.pass(UplinkName, in)
		require.Equal(t, accept, r.v, "spoofed SYN %d", i)
		// the listener answers each SYN; its SYN/ACK goes back out
		copy(out, synAck)
		copy(out[16:20], in[12:16])
		copy(out[22:24], in[20:22])
		require.Equal(t, accept, g.pass("front", out).v, "SYN/ACK %d", i)
	}
	require.LessOrEqual(t, g.tr.Table.Len(), max)
	for _, e := range g.tr.Table.Entries() {
		require.Equal(t, "SYN_RECV", e.State)
		require.False(t, e.Assured, "a SYN_RECV entry is not assured")
	}

	// 50 of 50 new connections from a real client get through, and stay
	for i := range 50 {
		cli := ap(hostAddr, uint16(50000+i))
		pub := ap(uplinkAddr, 8080)
		requireFlow(t, g.forward(UplinkName, "front", tcpPkt(t, cli, pub, fSYN, "")), cli, ap(webAddr, 80))
		requireFlow(t, g.forward("front", UplinkName, tcpPkt(t, ap(webAddr, 80), cli, fSYN|fACK, "")), pub, cli)
		g.forward(UplinkName, "front", tcpPkt(t, cli, pub, fACK, ""))
		e := g.entry(cli)
		require.Equal(t, "ESTABLISHED", e.State)
		require.True(t, e.Assured)
	}
	require.Zero(t, g.tr.Table.Dropped.Load(), "no new connection refused")
	for i := range 50 { // more flood does not push the real ones out
		copy(in, syn)
		packet.IPv4(in).SetSrc([4]byte{0xcc, 0, 0, byte(i)})
		require.Equal(t, accept, g.pass(UplinkName, in).v)
	}
	for i := range 50 {
		require.True(t, g.entry(ap(hostAddr, uint16(50000+i))).Assured)
	}
}

// A picked-up connection is assured when its first reply comes; a UDP flow
// when any reply comes.
func TestAssuredPickedUpAndUDP(t *testing.T) {
	g := newRig(t)
	c := newTCPConn(g)
	c.out(fACK|fPSH, "data")
	require.False(t, g.entry(c.cli).Assured)
	c.in(fACK, "")
	require.True(t, g.entry(c.cli).Assured)

	u := ap(web2Addr, 5000)
	g.forward("front", UplinkName, udpPkt(t, u, ap(remoteAddr, 53), "q"))
	require.False(t, g.entry(u).Assured)
	g.forward(UplinkName, "front", udpPkt(t, ap(remoteAddr, 53), ap(uplinkAddr, 5000), "a"))
	require.True(t, g.entry(u).Assured)
}

// A SYN on a connection in TIME_WAIT reopens it as Linux does: the old
// entry goes and a new connection starts, with its own state, NAT and
// counters.
func TestSYNReusesTimeWaitTuple(t *testing.T) {
	for _, state := range []TCPState{TCPTimeWait, TCPClose} {
		t.Run(state.String(), func(t *testing.T) {
			g := newRig(t)
			c := newTCPConn(g)
			c.handshake()
			if state == TCPTimeWait {
				c.out(fFIN|fACK, "")
				c.in(fFIN|fACK, "")
				c.out(fACK, "")
			} else {
				c.in(fRST, "")
			}
			c.requireState(state)
			require.True(t, g.entry(c.cli).Assured)

			c.out(fSYN, "") // the same tuple again: a new connection
			c.requireState(TCPSynSent)
			e := g.entry(c.cli)
			require.False(t, e.Assured)
			require.Equal(t, [2]uint64{1, 0}, e.Packets)
			require.EqualValues(t, 1, g.tr.Table.Reopened.Load())
			require.Equal(t, 1, g.tr.Table.Len())
			c.in(fSYN|fACK, "")
			c.out(fACK, "")
			c.requireState(TCPEstablished)
			require.True(t, g.entry(c.cli).Assured)
		})
	}
	// a SYN in ESTABLISHED changes nothing (ignored, as Linux does)
	g := newRig(t)
	c := newTCPConn(g)
	c.handshake()
	c.out(fSYN, "")
	c.requireState(TCPEstablished)
	require.Zero(t, g.tr.Table.Reopened.Load())
}

// Packets conntrack finds invalid are dropped at forward and counted as
// ct-invalid, never forwarded untranslated: truncated TCP and UDP, ICMP
// errors about no connection, TCP that cannot open one.
func TestInvalidDroppedAtForward(t *testing.T) {
	g := newRig(t)
	dst := ap(remoteAddr, 53)
	short := func(b []byte, l4 int) []byte {
		b = b[:20+l4]
		ip := packet.IPv4(b)
		ip.SetTotalLen(uint16(20 + l4))
		ip.SetHeaderChecksum()
		return b
	}
	for name, pkt := range map[string][]byte{
		"udp of 3 bytes":     short(udpPkt(t, ap(webAddr, 1000), dst, "x"), 3),
		"tcp of 3 bytes":     short(tcpPkt(t, ap(webAddr, 1001), dst, fSYN, ""), 3),
		"tcp of 10 bytes":    short(tcpPkt(t, ap(webAddr, 1002), dst, fSYN, ""), 10),
		"tcp fin, no conn":   tcpPkt(t, ap(webAddr, 1003), dst, fFIN|fACK, ""),
		"lone echo reply":    ping(t, webAddr, remoteAddr, 9, 1, true),
		"stray icmp error":   icmpError(t, webAddr, remoteAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, udpPkt(t, ap(remoteAddr, 53), ap(webAddr, 4444), "q")),
		"icmp not trackable": serializeICMP(t, webAddr, remoteAddr, layers.ICMPv4TypeTimestampRequest),
	} {
		r := g.pass("front", clone(pkt))
		require.Equal(t, Verdict{Action: Drop, Reason: stats.CtInvalid}, r.v, name)
		require.Equal(t, webAddr.As4(), packet.IPv4(r.ip).Src(), "%s: not translated", name)
	}
	require.Zero(t, g.tr.Table.Len())
	require.EqualValues(t, 7, g.row("invalid").Packets)

	// an invalid segment of a DNATed connection is dropped too, not let
	// through by the published port's accept
	cli := ap(hostAddr, 45000)
	g.forward(UplinkName, "front", tcpPkt(t, cli, ap(uplinkAddr, 8080), fSYN, ""))
	r := g.pass(UplinkName, tcpPkt(t, cli, ap(uplinkAddr, 8080), 0, "no flags"))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.CtInvalid}, r.v)
}

func serializeICMP(t *testing.T, src, dst netip.Addr, typ uint8) []byte {
	ip := ipLayer(src, dst, layers.IPProtocolICMPv4)
	return serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0)})
}

// A table full of closed TCP connections (TIME_WAIT, assured) still takes
// new ones: one of them makes room, as Linux's conntrack GC evicts closing
// connections from a nearly full table; a table full of established ones
// refuses, as Linux does.
func TestFullTableOfTimeWaitTakesNewConnections(t *testing.T) {
	for _, close := range []bool{true, false} {
		g := newRig(t, maxConns(200))
		for i := range 200 {
			c := &tcpConn{g: g, cli: ap(webAddr, uint16(20000+i)), srv: ap(remoteAddr, 80), masq: ap(uplinkAddr, uint16(20000+i))}
			c.out(fSYN, "")
			c.in(fSYN|fACK, "")
			c.out(fACK, "")
			if close {
				c.out(fFIN|fACK, "")
				c.in(fFIN|fACK, "")
				c.out(fACK, "")
				c.requireState(TCPTimeWait)
			}
			require.True(t, g.entry(c.cli).Assured)
		}
		r := g.pass("front", tcpPkt(t, ap(web2Addr, 30000), ap(remoteAddr, 80), fSYN, ""))
		if close {
			require.Equal(t, accept, r.v, "a TIME_WAIT connection makes room")
			require.EqualValues(t, 1, g.tr.Table.EarlyDropped.Load())
		} else {
			require.Equal(t, Verdict{Action: Drop, Reason: stats.ConntrackFull}, r.v, "established connections are kept")
		}
		require.Equal(t, 200, g.tr.Table.Len())
	}
}
