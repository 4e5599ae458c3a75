package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

func TestUDPTimeouts(t *testing.T) {
	g := newRig(t)
	cli, srv := ap(webAddr, 5000), ap(remoteAddr, 53)
	g.forward("front", UplinkName, udpPkt(t, cli, srv, "query"))
	e := g.entry(cli)
	require.Equal(t, 30*time.Second, time.Duration(e.Timeout), "unreplied")
	require.False(t, e.Assured)
	require.Empty(t, e.State)

	g.clk.Advance(20 * time.Second)
	in := g.forward(UplinkName, "front", udpPkt(t, srv, ap(uplinkAddr, 5000), "answer"))
	requireFlow(t, in, srv, cli)
	e = g.entry(cli)
	require.Equal(t, 2*time.Minute, time.Duration(e.Timeout), "replied: a stream")
	require.True(t, e.Assured)

	g.clk.Advance(2*time.Minute - time.Second)
	require.Len(t, g.tr.Table.Entries(), 1)
	g.clk.Advance(2 * time.Second)
	require.Empty(t, g.tr.Table.Entries())

	// an unreplied one is gone after 30 s
	g.forward("front", UplinkName, udpPkt(t, cli, srv, "query"))
	g.clk.Advance(31 * time.Second)
	require.Empty(t, g.tr.Table.Entries())
	g.tr.Table.Sweep(numShards)
	require.Zero(t, g.tr.Table.Len())
}

func TestPingMasquerade(t *testing.T) {
	g := newRig(t)
	out := g.forward("front", UplinkName, ping(t, webAddr, remoteAddr, 77, 1, false))
	requireFlow(t, out, ap(uplinkAddr, 77), ap(remoteAddr, 77))
	e := g.entry(ap(webAddr, 77))
	require.Equal(t, "icmp", e.Proto)
	require.Equal(t, TupleView{Src: remoteAddr, Dst: uplinkAddr, Sport: 77, Dport: 77}, e.Reply)
	require.Equal(t, 30*time.Second, time.Duration(e.Timeout))

	in := g.forward(UplinkName, "front", ping(t, remoteAddr, uplinkAddr, 77, 1, true))
	requireFlow(t, in, ap(remoteAddr, 77), ap(webAddr, 77))
	require.EqualValues(t, layers.ICMPv4TypeEchoReply, decodeIP(t, in).icmp.TypeCode.Type())

	// web2 pings the same host with the same id: another id is picked
	out = g.forward("front", UplinkName, ping(t, web2Addr, remoteAddr, 77, 1, false))
	other := decodeIP(t, out).src()
	require.Equal(t, uplinkAddr, other.Addr())
	require.NotEqual(t, uint16(77), other.Port())
	in = g.forward(UplinkName, "front", ping(t, remoteAddr, uplinkAddr, other.Port(), 1, true))
	requireFlow(t, in, ap(remoteAddr, 77), ap(web2Addr, 77)) // the one id field, translated back
	// and the first one still gets its replies
	in = g.forward(UplinkName, "front", ping(t, remoteAddr, uplinkAddr, 77, 2, true))
	requireFlow(t, in, ap(remoteAddr, 77), ap(webAddr, 77))
}

func TestMasqueradeKeepsFreePortAndPicksAnotherOnCollision(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			g := newRig(t)
			pkt := func(src, dst netip.AddrPort, flags int) []byte {
				if proto == "tcp" {
					return tcpPkt(t, src, dst, flags, "hello")
				}
				return udpPkt(t, src, dst, "hello")
			}
			srv := ap(remoteAddr, 443)
			out := g.forward("front", UplinkName, pkt(ap(webAddr, 33000), srv, fSYN))
			requireFlow(t, out, ap(uplinkAddr, 33000), srv)

			out = g.forward("front", UplinkName, pkt(ap(web2Addr, 33000), srv, fSYN))
			second := decodeIP(t, out).src()
			require.Equal(t, uplinkAddr, second.Addr())
			require.NotEqual(t, uint16(33000), second.Port(), "the port is taken towards this server")
			require.GreaterOrEqual(t, second.Port(), uint16(1024))

			// the same port towards another server is free
			out = g.forward("front", UplinkName, pkt(ap(web2Addr, 33000), ap(remoteAddr, 444), fSYN))
			requireFlow(t, out, ap(uplinkAddr, 33000), ap(remoteAddr, 444))

			// replies reach the right endpoint
			in := g.forward(UplinkName, "front", pkt(srv, ap(uplinkAddr, 33000), fSYN|fACK))
			requireFlow(t, in, srv, ap(webAddr, 33000))
			in = g.forward(UplinkName, "front", pkt(srv, second, fSYN|fACK))
			requireFlow(t, in, srv, ap(web2Addr, 33000))

			// and later packets of the second keep its port
			out = g.forward("front", UplinkName, pkt(ap(web2Addr, 33000), srv, fACK))
			requireFlow(t, out, second, srv)
			require.True(t, g.entry(ap(web2Addr, 33000)).SNAT)
		})
	}
}

func TestMasqueradeOnlyThroughUplinkAndOnlyMasqueradeNetworks(t *testing.T) {
	g := newRig(t, func(p *config.Plan) { p.Networks[1].Isolate, p.Networks[0].Isolate = false, false })
	// back has masquerade = false: the host sees db's own address
	out := g.forward("back", UplinkName, udpPkt(t, ap(dbAddr, 7000), ap(hostAddr, 9), "x"))
	requireFlow(t, out, ap(dbAddr, 7000), ap(hostAddr, 9))
	require.False(t, g.entry(ap(dbAddr, 7000)).SNAT)
	// front to back is routed, not masqueraded
	out = g.forward("front", "back", udpPkt(t, ap(webAddr, 7000), ap(dbAddr, 9), "x"))
	requireFlow(t, out, ap(webAddr, 7000), ap(dbAddr, 9))
	// the host reaches an endpoint by its address, without NAT
	out = g.forward(UplinkName, "front", udpPkt(t, ap(hostAddr, 7001), ap(webAddr, 9), "x"))
	requireFlow(t, out, ap(hostAddr, 7001), ap(webAddr, 9))
	back := g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 9), ap(hostAddr, 7001), "y"))
	requireFlow(t, back, ap(webAddr, 9), ap(hostAddr, 7001))
}

func TestUDPChecksumZeroStaysZero(t *testing.T) {
	g := newRig(t)
	cli, srv := ap(webAddr, 5001), ap(remoteAddr, 53)
	out := g.forward("front", UplinkName, udpNoSum(t, cli, srv, "no checksum"))
	requireFlow(t, out, ap(uplinkAddr, 5001), srv)
	require.Zero(t, decodeIP(t, out).udp.Checksum)
	in := g.forward(UplinkName, "front", udpNoSum(t, srv, ap(uplinkAddr, 5001), "none either"))
	requireFlow(t, in, srv, cli)
	require.Zero(t, decodeIP(t, in).udp.Checksum)
}

// A UDP checksum that NAT turns into zero must be sent as 0xffff: zero
// would tell the receiver there is no checksum (RFC 768).
func TestUDPChecksumNeverBecomesZero(t *testing.T) {
	g := newRig(t)
	srv := ap(remoteAddr, 53)
	for i := range 3 {
		cli := ap(webAddr, uint16(6000+i))
		// a filler that makes the packet, as masqueraded, sum to zero:
		// the filler is the checksum computed with a zero filler
		want := udpPkt(t, ap(uplinkAddr, cli.Port()), srv, "ab\x00\x00")
		b := udpPkt(t, cli, srv, "ab"+string(want[26:28]))
		require.NotZero(t, packet.UDP(b[20:]).Checksum())
		out := g.forward("front", UplinkName, b)
		requireFlow(t, out, ap(uplinkAddr, cli.Port()), srv)
		require.EqualValues(t, 0xffff, packet.UDP(out[20:]).Checksum(), "all ones, not zero")
	}
}

func TestDNATPublishedPorts(t *testing.T) {
	g := newRig(t)
	for _, tc := range []struct {
		name      string
		pkt, back func(src, dst netip.AddrPort) []byte
		host, ctr uint16
		cport     uint16
	}{
		{"tcp", func(s, d netip.AddrPort) []byte { return tcpPkt(t, s, d, fSYN, "") },
			func(s, d netip.AddrPort) []byte { return tcpPkt(t, s, d, fSYN|fACK, "") }, 8080, 80, 45000},
		{"udp", func(s, d netip.AddrPort) []byte { return udpPkt(t, s, d, "q") },
			func(s, d netip.AddrPort) []byte { return udpPkt(t, s, d, "a") }, 5353, 53, 45010},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := ap(hostAddr, tc.cport)
			out := g.forward(UplinkName, "front", tc.pkt(cli, ap(uplinkAddr, tc.host)))
			requireFlow(t, out, cli, ap(webAddr, tc.ctr))
			e := g.entry(cli)
			require.True(t, e.DNAT)
			require.False(t, e.SNAT)
			require.Equal(t, TupleView{Src: webAddr, Dst: hostAddr, Sport: tc.ctr, Dport: tc.cport}, e.Reply)

			back := g.forward("front", UplinkName, tc.back(ap(webAddr, tc.ctr), cli))
			requireFlow(t, back, ap(uplinkAddr, tc.host), cli)
			if tc.name == "tcp" {
				require.False(t, g.entry(cli).Assured, "SYN_RECV: not assured until the handshake completes")
				g.forward(UplinkName, "front", tcpPkt(t, cli, ap(uplinkAddr, tc.host), fACK, ""))
			}
			require.True(t, g.entry(cli).Assured)

			// from beyond the host too
			far := ap(remoteAddr, tc.cport+1)
			out = g.forward(UplinkName, "front", tc.pkt(far, ap(uplinkAddr, tc.host)))
			requireFlow(t, out, far, ap(webAddr, tc.ctr))
		})
	}
	t.Run("not published", func(t *testing.T) {
		r := g.pass(UplinkName, tcpPkt(t, ap(hostAddr, 45002), ap(uplinkAddr, 8081), fSYN, ""))
		require.Equal(t, accept, r.v)
		require.Empty(t, r.out, "for the router itself")
		requireFlow(t, r.ip, ap(hostAddr, 45002), ap(uplinkAddr, 8081))
		// the protocol matters: 8080 is published for TCP only
		r = g.pass(UplinkName, udpPkt(t, ap(hostAddr, 45003), ap(uplinkAddr, 8080), "x"))
		require.Empty(t, r.out)
		requireFlow(t, r.ip, ap(hostAddr, 45003), ap(uplinkAddr, 8080))
	})
	t.Run("internal networks get no DNAT", func(t *testing.T) {
		r := g.pass("secure", tcpPkt(t, ap(vaultAddr, 45004), ap(uplinkAddr, 8080), fSYN, ""))
		require.Empty(t, r.out, "left to the router, which refuses it")
		requireFlow(t, r.ip, ap(vaultAddr, 45004), ap(uplinkAddr, 8080))
	})
	require.EqualValues(t, 2, g.row("publish web 8080:80/tcp").Packets) // the DNAT rule, once per connection
}

// An endpoint on an internal network has no way to the uplink, and the
// uplink none to it, published ports included.
func TestInternalEndpointIsNotPublished(t *testing.T) {
	g := newRig(t, func(p *config.Plan) {
		p.Endpoints[3].Publish = []config.Publish{{HostPort: 8443, ContainerPort: 443, Proto: "tcp"}}
	})
	r := g.pass(UplinkName, tcpPkt(t, ap(hostAddr, 45000), ap(uplinkAddr, 8443), fSYN, ""))
	require.NotEqual(t, "secure", r.out)
	require.Zero(t, g.tr.Table.Len())
	r = g.pass("secure", tcpPkt(t, ap(vaultAddr, 1000), ap(remoteAddr, 443), fSYN, ""))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.Isolated}, r.v)
	r = g.pass(UplinkName, tcpPkt(t, ap(hostAddr, 1000), ap(vaultAddr, 443), fSYN, ""))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.Isolated}, r.v)
}

func TestHairpin(t *testing.T) {
	g := newRig(t)
	cli := ap(web2Addr, 41000)
	// web2 reaches web's published port through the uplink address
	out := g.forward("front", "front", tcpPkt(t, cli, ap(uplinkAddr, 8080), fSYN, ""))
	seen := decodeIP(t, out).src()
	require.Equal(t, frontGW, seen.Addr(), "the server sees the gateway as the client")
	require.Equal(t, ap(webAddr, 80), decodeIP(t, out).dst())
	e := g.entry(cli)
	require.True(t, e.DNAT)
	require.True(t, e.SNAT)
	require.Equal(t, TupleView{Src: webAddr, Dst: frontGW, Sport: 80, Dport: seen.Port()}, e.Reply)

	// the reply goes back to web2, from the address it called
	in := g.forward("front", "front", tcpPkt(t, ap(webAddr, 80), seen, fSYN|fACK, ""))
	requireFlow(t, in, ap(uplinkAddr, 8080), cli)
	out = g.forward("front", "front", tcpPkt(t, cli, ap(uplinkAddr, 8080), fACK, "req"))
	requireFlow(t, out, seen, ap(webAddr, 80))
	require.Equal(t, TCPEstablished.String(), g.entry(cli).State)

	// web reaching its own published port works the same way
	self := ap(webAddr, 41001)
	out = g.forward("front", "front", udpPkt(t, self, ap(uplinkAddr, 5353), "q"))
	requireFlow(t, out, ap(frontGW, 41001), ap(webAddr, 53))
	in = g.forward("front", "front", udpPkt(t, ap(webAddr, 53), ap(frontGW, 41001), "a"))
	requireFlow(t, in, ap(uplinkAddr, 5353), self)
}

func TestPublishedPortFromAnotherNetworkCrossesIsolation(t *testing.T) {
	g := newRig(t)
	cli := ap(dbAddr, 42000)
	out := g.forward("back", "front", tcpPkt(t, cli, ap(uplinkAddr, 8080), fSYN, ""))
	requireFlow(t, out, cli, ap(webAddr, 80))
	in := g.forward("front", "back", tcpPkt(t, ap(webAddr, 80), cli, fSYN|fACK, ""))
	requireFlow(t, in, ap(uplinkAddr, 8080), cli)
	require.NotZero(t, g.row("publish web 8080:80/tcp").Packets)

	// isolation still holds for everything else
	r := g.pass("back", tcpPkt(t, ap(dbAddr, 42001), ap(webAddr, 80), fSYN, ""))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.Isolated}, r.v)
	require.Equal(t, "front", r.out)
	r = g.pass("back", tcpPkt(t, ap(dbAddr, 42002), ap(webAddr, 81), fSYN, ""))
	require.Equal(t, Drop, r.v.Action)
}

// --- RELATED ICMP errors -------------------------------------------------

// requireQuote checks the packet an ICMP error quotes.
func requireQuote(t *testing.T, b []byte, src, dst netip.AddrPort) {
	t.Helper()
	d := decodeIP(t, b)
	require.NotNil(t, d.icmp)
	requireFlow(t, d.icmp.Payload, src, dst)
}

func TestRelatedErrorsIntoMasqueradedFlow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		from       netip.Addr // who sends the error
		typ, code  uint8
		mtu        uint16
		keepSource bool
	}{
		{"port unreachable from the server", remoteAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, true},
		{"time exceeded from a router", hostAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, true},
		{"frag needed from a router", hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1400, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			cli, srv := ap(webAddr, 5000), ap(remoteAddr, 53)
			sent := g.forward("front", UplinkName, udpPkt(t, cli, srv, "query"))
			requireFlow(t, sent, ap(uplinkAddr, 5000), srv)

			errPkt := icmpError(t, tc.from, uplinkAddr, tc.typ, tc.code, tc.mtu, sent)
			in := g.forward(UplinkName, "front", errPkt)
			d := decodeIP(t, in)
			require.Equal(t, tc.from.AsSlice(), []byte(d.ip.SrcIP.To4()), "the error's sender is kept")
			require.Equal(t, webAddr.AsSlice(), []byte(d.ip.DstIP.To4()), "outer destination")
			require.Equal(t, layers.CreateICMPv4TypeCode(tc.typ, tc.code), d.icmp.TypeCode)
			if tc.mtu != 0 {
				require.Equal(t, tc.mtu, d.icmp.Seq)
			}
			requireQuote(t, in, cli, srv)
			inner := decodeIP(t, d.icmp.Payload)
			require.Equal(t, "query", string(inner.udp.Payload))
			require.NotZero(t, inner.udp.Checksum)
			// requireChecksums (in forward) verified outer, ICMP, inner IP and inner UDP
		})
	}
}

func TestRelatedErrorsFromDNATEndpoint(t *testing.T) {
	g := newRig(t)
	cli := ap(hostAddr, 46000)
	sent := g.forward(UplinkName, "front", udpPkt(t, cli, ap(uplinkAddr, 5353), "query"))
	requireFlow(t, sent, cli, ap(webAddr, 53))

	// nothing listens on web:53: port unreachable, which must look as if
	// it came from the published address
	out := g.forward("front", UplinkName, icmpError(t, webAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, sent))
	d := decodeIP(t, out)
	require.Equal(t, uplinkAddr.AsSlice(), []byte(d.ip.SrcIP.To4()), "outer source")
	require.Equal(t, hostAddr.AsSlice(), []byte(d.ip.DstIP.To4()))
	requireQuote(t, out, cli, ap(uplinkAddr, 5353))

	// a TCP flow, quoted with only 8 bytes of its header as RFC 792 allows
	tcli := ap(hostAddr, 46001)
	syn := g.forward(UplinkName, "front", tcpPkt(t, tcli, ap(uplinkAddr, 8080), fSYN, ""))
	short := clone(syn[:28])
	out = g.forward("front", UplinkName, icmpError(t, webAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1280, short))
	d = decodeIP(t, out)
	require.Equal(t, uplinkAddr.AsSlice(), []byte(d.ip.SrcIP.To4()))
	q := packet.IPv4(d.icmp.Payload)
	require.Equal(t, uplinkAddr.As4(), q.Dst())
	require.EqualValues(t, 8080, packet.Ports(q[q.HeaderLen():]).Dst()) // a quote: shorter than its total length
	require.True(t, q.HeaderChecksumValid())
}

func TestRelatedErrorAboutPingAndStrays(t *testing.T) {
	g := newRig(t)
	// a ping through masquerade, then a time exceeded about it
	sent := g.forward("front", UplinkName, ping(t, webAddr, remoteAddr, 99, 1, false))
	in := g.forward(UplinkName, "front", icmpError(t, hostAddr, uplinkAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, sent))
	requireQuote(t, in, ap(webAddr, 99), ap(remoteAddr, 99))
	require.Equal(t, hostAddr.AsSlice(), []byte(decodeIP(t, in).ip.SrcIP.To4()))

	// an error about nothing we know passes untouched, as INVALID
	stray := udpPkt(t, ap(uplinkAddr, 9), ap(remoteAddr, 9), "?")
	r := g.pass(UplinkName, icmpError(t, hostAddr, uplinkAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, stray))
	require.Empty(t, r.out)
	requireQuote(t, r.ip, ap(uplinkAddr, 9), ap(remoteAddr, 9))
}

// Errors the router itself sends (through Output) about a translated packet
// quote it as its sender knows it.
func TestRouterErrorsAboutTranslatedPackets(t *testing.T) {
	g := newRig(t)
	cli := ap(hostAddr, 47000)
	g.forward(UplinkName, "front", tcpPkt(t, cli, ap(uplinkAddr, 8080), fSYN, ""))
	g.forward("front", UplinkName, tcpPkt(t, ap(webAddr, 80), cli, fSYN|fACK, ""))

	// a big segment to the published port does not fit front's MTU: the
	// router answers frag needed from its uplink address about the packet
	// as prerouting left it (DNATed to web:80)
	var f Flow
	big := tcpPkt(t, cli, ap(uplinkAddr, 8080), fACK, "a lot of data")
	require.Equal(t, accept, g.tr.Prerouting(&f, big, UplinkName))
	requireFlow(t, big, cli, ap(webAddr, 80))
	icmp := icmpError(t, uplinkAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1000, big)
	require.Equal(t, accept, g.tr.Output(icmp, UplinkName))
	requireChecksums(t, icmp)
	requireQuote(t, icmp, cli, ap(uplinkAddr, 8080))
	require.Equal(t, uplinkAddr.As4(), packet.IPv4(icmp).Src())

	// and in a masqueraded flow, about a reply too big for front
	mcli, srv := ap(webAddr, 5000), ap(remoteAddr, 53)
	g.forward("front", UplinkName, udpPkt(t, mcli, srv, "q"))
	reply := udpPkt(t, srv, ap(uplinkAddr, 5000), "a big answer")
	require.Equal(t, accept, g.tr.Prerouting(&f, reply, UplinkName))
	requireFlow(t, reply, srv, mcli)
	icmp = icmpError(t, uplinkAddr, remoteAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1000, reply)
	require.Equal(t, accept, g.tr.Output(icmp, UplinkName))
	requireChecksums(t, icmp)
	requireQuote(t, icmp, srv, ap(uplinkAddr, 5000))

	// errors about untranslated packets are left alone
	plain := udpPkt(t, ap(webAddr, 5999), ap(remoteAddr, 53), "q")
	icmp = icmpError(t, frontGW, webAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, plain)
	before := clone(icmp)
	require.Equal(t, accept, g.tr.Output(icmp, "front"))
	require.Equal(t, before, []byte(icmp))
}

// Protocols without ports (GRE here) are tracked by their addresses alone:
// NAT has no port to give them, nor one to tell two of them apart.
func TestPortlessProtocol(t *testing.T) {
	gre := func(src, dst netip.Addr) []byte {
		return serialize(t, ipLayer(src, dst, layers.IPProtocolGRE), gopacket.Payload("\x00\x00\x08\x00payload"))
	}
	// an SNAT rule with a port applies to GRE without one
	g := newRig(t, withRules(config.Rule{Hook: "postrouting", Src: pfx("172.21.0.0/24"), Out: UplinkName, Action: "snat", To: "10.250.0.2:2000"}))
	out := g.forward("back", UplinkName, gre(dbAddr, remoteAddr))
	requireFlow(t, out, ap(uplinkAddr, 0), ap(remoteAddr, 0))
	in := g.forward(UplinkName, "back", gre(remoteAddr, uplinkAddr))
	requireFlow(t, in, ap(remoteAddr, 0), ap(dbAddr, 0))
	e := g.entry(ap(dbAddr, 0))
	require.Equal(t, "proto-47", e.Proto)
	require.True(t, e.Assured)

	// a second endpoint masqueraded to the same peer cannot be told apart:
	// refused rather than given the first one's replies
	g = newRig(t)
	g.forward("front", UplinkName, gre(webAddr, remoteAddr))
	r := g.pass("front", gre(web2Addr, remoteAddr))
	require.Equal(t, Verdict{Action: Drop, Reason: stats.CtClash}, r.v, "a clash, not a full table")
	require.EqualValues(t, 1, g.tr.Table.InsertFailed.Load())
	require.Zero(t, g.tr.Table.Dropped.Load())
	in = g.forward(UplinkName, "front", gre(remoteAddr, uplinkAddr))
	requireFlow(t, in, ap(remoteAddr, 0), ap(webAddr, 0))
	require.Len(t, g.tr.Table.Entries(), 1)
}

func TestLoneEchoReplyIsInvalid(t *testing.T) {
	g := newRig(t)
	pkt := ping(t, netip.MustParseAddr("10.250.0.1"), uplinkAddr, 5, 1, true)
	var f Flow
	g.tr.Prerouting(&f, packet.IPv4(pkt), UplinkName)
	require.Equal(t, StateInvalid, f.meta.State)
	require.False(t, f.tracked)
	require.Zero(t, g.tr.Table.Len())
}
