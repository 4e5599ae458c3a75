package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/stats"
)

// tcpConn drives one masqueraded TCP connection from web to remote:443.
type tcpConn struct {
	g        *rig
	cli, srv netip.AddrPort
	masq     netip.AddrPort // the client as the server sees it
}

func newTCPConn(g *rig) *tcpConn {
	return &tcpConn{g: g, cli: ap(webAddr, 40000), srv: ap(remoteAddr, 443), masq: ap(uplinkAddr, 40000)}
}

// out sends a segment from the client; it must leave masqueraded.
func (c *tcpConn) out(flags int, payload string) {
	c.g.t.Helper()
	ip := c.g.forward("front", UplinkName, tcpPkt(c.g.t, c.cli, c.srv, flags, payload))
	requireFlow(c.g.t, ip, c.masq, c.srv)
}

// in sends a segment from the server; it must reach the client.
func (c *tcpConn) in(flags int, payload string) {
	c.g.t.Helper()
	ip := c.g.forward(UplinkName, "front", tcpPkt(c.g.t, c.srv, c.masq, flags, payload))
	requireFlow(c.g.t, ip, c.srv, c.cli)
}

// requireState checks the connection's state and that its timeout is the
// one Linux gives that state.
func (c *tcpConn) requireState(s TCPState) {
	c.g.t.Helper()
	e := c.g.entry(c.cli)
	require.Equal(c.g.t, s.String(), e.State)
	require.Equal(c.g.t, tcpTimeouts[s], time.Duration(e.Timeout), "timeout in %v", s)
}

func (c *tcpConn) handshake() {
	c.g.t.Helper()
	c.out(fSYN, "")
	c.requireState(TCPSynSent)
	c.in(fSYN|fACK, "")
	c.requireState(TCPSynRecv)
	c.out(fACK, "")
	c.requireState(TCPEstablished)
	c.out(fACK|fPSH, "GET / HTTP/1.0\r\n\r\n")
	c.in(fACK|fPSH, "HTTP/1.0 200 OK\r\n\r\n")
	c.requireState(TCPEstablished)
}

func TestTCPHandshakeDataAndClose(t *testing.T) {
	t.Run("client closes first", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.handshake()
		c.out(fFIN|fACK, "")
		c.requireState(TCPFinWait)
		c.in(fACK, "")
		c.requireState(TCPCloseWait)
		c.in(fFIN|fACK, "")
		c.requireState(TCPLastAck)
		c.out(fACK, "")
		c.requireState(TCPTimeWait)
	})
	t.Run("server closes first", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.handshake()
		c.in(fFIN|fACK, "")
		c.requireState(TCPFinWait)
		c.out(fACK, "")
		c.requireState(TCPCloseWait)
		c.out(fFIN|fACK, "")
		c.requireState(TCPLastAck)
		c.in(fACK, "")
		c.requireState(TCPTimeWait)
	})
	t.Run("simultaneous close", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.handshake()
		c.out(fFIN|fACK, "")
		c.in(fFIN|fACK, "") // crossed the client's FIN
		c.requireState(TCPLastAck)
		c.out(fACK, "")
		c.requireState(TCPTimeWait)
		c.in(fACK, "")
		c.requireState(TCPTimeWait)
	})
	t.Run("reset", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.handshake()
		c.in(fRST, "")
		c.requireState(TCPClose)
		require.Equal(t, 10*time.Second, time.Duration(c.g.entry(c.cli).Timeout))
		c.g.clk.Advance(10*time.Second + time.Millisecond)
		require.Empty(t, c.g.tr.Table.Entries())
	})
	t.Run("reset of a connection attempt", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.out(fSYN, "")
		c.in(fRST|fACK, "")
		c.requireState(TCPClose)
	})
	t.Run("simultaneous open", func(t *testing.T) {
		c := newTCPConn(newRig(t))
		c.out(fSYN, "")
		c.in(fSYN, "")
		c.requireState(TCPSynSent2)
		c.in(fSYN|fACK, "")
		c.requireState(TCPSynRecv)
	})
}

// The state machine as a table, against nf_conntrack_proto_tcp.c.
func TestTCPTransitionsSpotChecks(t *testing.T) {
	for _, tc := range []struct {
		dir   Dir
		flags uint8
		from  TCPState
		want  TCPState
	}{
		{Original, 0x02, tcpNone, TCPSynSent},
		{Reply, 0x12, TCPSynSent, TCPSynRecv},
		{Original, 0x10, TCPSynRecv, TCPEstablished},
		{Original, 0x11, TCPEstablished, TCPFinWait},       // FIN|ACK is a fin
		{Reply, 0x14, TCPEstablished, TCPClose},            // RST|ACK is a reset
		{Original, 0x12, TCPSynSent, tcpInvalid},           // SYN/ACK from the client
		{Original, 0x00, TCPEstablished, tcpInvalid},       // no flags at all
		{Reply, 0x02, TCPEstablished, tcpInvalid},          // SYN from the server mid-stream
		{Original, 0x02, TCPEstablished, tcpIgnore},        // retransmitted SYN
		{Original, 0x02, TCPTimeWait, TCPSynSent},          // port reuse
		{Reply, 0x10, TCPSynSent, tcpIgnore},               // a stray ACK before the SYN/ACK
		{Original, 0x01, tcpNone, tcpInvalid},              // FIN cannot start a connection
		{Original, 0x10, tcpNone, TCPEstablished},          // ACK can: mid-stream pickup
		{Reply, 0x11, TCPFinWait, TCPLastAck},              // FIN|ACK answering a FIN
		{Original, 0x10, TCPLastAck, TCPTimeWait},          // the last ACK
		{Original, 0x02 | 0x01, TCPEstablished, tcpIgnore}, // SYN|FIN counts as SYN
	} {
		require.Equal(t, tc.want, tcpTransitions[tc.dir][classify(tc.flags)][tc.from],
			"dir %d flags %#x from %v", tc.dir, tc.flags, tc.from)
	}
}

func TestTCPTimeoutsPerState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state TCPState
		drive func(c *tcpConn)
	}{
		{"syn_sent", TCPSynSent, func(c *tcpConn) { c.out(fSYN, "") }},
		{"syn_recv", TCPSynRecv, func(c *tcpConn) { c.out(fSYN, ""); c.in(fSYN|fACK, "") }},
		{"established", TCPEstablished, func(c *tcpConn) { c.handshake() }},
		{"fin_wait", TCPFinWait, func(c *tcpConn) { c.handshake(); c.out(fFIN|fACK, "") }},
		{"close_wait", TCPCloseWait, func(c *tcpConn) { c.handshake(); c.out(fFIN|fACK, ""); c.in(fACK, "") }},
		{"last_ack", TCPLastAck, func(c *tcpConn) { c.handshake(); c.out(fFIN|fACK, ""); c.in(fFIN|fACK, "") }},
		{"time_wait", TCPTimeWait, func(c *tcpConn) {
			c.handshake()
			c.out(fFIN|fACK, "")
			c.in(fFIN|fACK, "")
			c.out(fACK, "")
		}},
		{"close", TCPClose, func(c *tcpConn) { c.handshake(); c.out(fRST, "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			c := newTCPConn(g)
			tc.drive(c)
			c.requireState(tc.state)
			timeout := tcpTimeouts[tc.state]

			g.clk.Advance(timeout - time.Second)
			require.Len(t, g.tr.Table.Entries(), 1, "alive just before its timeout")
			g.clk.Advance(2 * time.Second)
			require.Empty(t, g.tr.Table.Entries(), "gone after its timeout")
			_, _, found := g.tr.Table.Lookup(Tuple{Src: c.cli.Addr().As4(), Dst: c.srv.Addr().As4(),
				Sport: c.cli.Port(), Dport: c.srv.Port(), Proto: 6})
			require.False(t, found)
			require.Equal(t, 1, g.tr.Table.Len(), "still in the table until swept")
			g.tr.Table.Sweep(numShards)
			require.Zero(t, g.tr.Table.Len())
			require.EqualValues(t, 1, g.tr.Table.Expired.Load())
		})
	}
}

func TestTCPActivityRefreshesTimeout(t *testing.T) {
	g := newRig(t)
	c := newTCPConn(g)
	c.out(fSYN, "")
	for range 5 {
		g.clk.Advance(90 * time.Second) // less than SYN_SENT's 2 minutes each time
		c.out(fSYN, "")                 // a retransmission keeps it alive
	}
	c.requireState(TCPSynSent)
	g.tr.Table.Sweep(numShards)
	require.Equal(t, 1, g.tr.Table.Len())
}

func TestTCPMidStreamPickup(t *testing.T) {
	g := newRig(t)
	c := newTCPConn(g)
	c.out(fACK|fPSH, "more data") // the table forgot the connection, the endpoints did not
	c.requireState(TCPEstablished)
	c.in(fACK, "")
	require.True(t, g.entry(c.cli).Assured)

	// a FIN, a RST or a SYN/ACK cannot start a connection: not tracked,
	// and dropped at forward as invalid (Docker's --ctstate INVALID -j DROP)
	// rather than sent out untranslated
	for _, flags := range []int{fFIN | fACK, fRST, fSYN | fACK} {
		cli := ap(web2Addr, 40001)
		r := g.pass("front", tcpPkt(t, cli, c.srv, flags, ""))
		require.Equal(t, Verdict{Action: Drop, Reason: stats.CtInvalid}, r.v, "flags %#x", flags)
		requireFlow(t, r.ip, cli, c.srv)
		require.Len(t, g.tr.Table.Entries(), 1, "flags %#x", flags)
	}
}

// invalidDropRig drops packets whose state is INVALID in forward, so tests
// can see which ones the tracker calls invalid.
func invalidDropRig(t *testing.T) *rig {
	return newRig(t, func(p *config.Plan) {
		p.Rules = append(p.Rules, config.Rule{Hook: "forward", State: []string{"invalid"}, Action: "drop", Line: 90})
	})
}

func TestTCPInvalidSegments(t *testing.T) {
	g := invalidDropRig(t)
	c := newTCPConn(g)
	c.out(fSYN, "")

	// SYN/ACK in the original direction
	r := g.pass("front", tcpPkt(t, c.cli, c.srv, fSYN|fACK, ""))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.Filtered}, r.v)
	c.requireState(TCPSynSent)

	// a segment without flags, either way
	r = g.pass(UplinkName, tcpPkt(t, c.srv, c.masq, 0, ""))
	require.Equal(t, Drop, r.v.Action)
	c.in(fSYN|fACK, "") // the real SYN/ACK goes through
	c.out(fACK, "")
	r = g.pass("front", tcpPkt(t, c.cli, c.srv, 0, "x"))
	require.Equal(t, Drop, r.v.Action)
	c.requireState(TCPEstablished)

	// a FIN out of the blue is invalid and creates nothing
	r = g.pass("front", tcpPkt(t, ap(web2Addr, 5), c.srv, fFIN, ""))
	require.Equal(t, Drop, r.v.Action)
	require.Len(t, g.tr.Table.Entries(), 1)

	row := g.row("rule line 90")
	require.Equal(t, Forward, row.Hook)
	require.EqualValues(t, 4, row.Packets)
}

// A TCP packet too short for its flags is not a connection's first segment,
// and must not crash the tracker.
func TestTCPTruncatedHeader(t *testing.T) {
	g := invalidDropRig(t)
	for n := 4; n < 20; n++ {
		b := tcpPkt(t, ap(webAddr, 1234), ap(remoteAddr, 80), fSYN, "")
		b = b[:20+n]
		b[2], b[3] = 0, byte(20+n)
		r := g.pass("front", b)
		if n < 14 {
			require.Equal(t, Drop, r.v.Action, "%d bytes of TCP: invalid", n)
		}
	}
}
