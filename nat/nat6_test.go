package nat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/stats"
)

// NAT66: a TCP connection from a masquerade6 network leaves with the
// uplink's address6 as its source, its replies come back to the endpoint,
// and the connection is listed as an IPv6 one going through TCP's states.
func TestNAT66MasqueradeTCP(t *testing.T) {
	g := newRig6(t)
	cli, srv, masq := ap(web6, 40000), ap(remote6, 443), ap(uplink6, 40000)
	out := func(flags int) {
		requireFlow(t, g.forward6("front", UplinkName, tcpPkt(t, cli, srv, flags, "")), masq, srv)
	}
	in := func(flags int) {
		requireFlow(t, g.forward6(UplinkName, "front", tcpPkt(t, srv, masq, flags, "")), srv, cli)
	}
	out(fSYN)
	require.Equal(t, "SYN_SENT", g.entry(cli).State)
	in(fSYN | fACK)
	out(fACK)
	in(fACK | fPSH)
	e := g.entry(cli)
	require.Equal(t, Entry{Family: "ipv6", Proto: "tcp", State: "ESTABLISHED",
		Orig:  TupleView{Src: web6, Dst: remote6, Sport: 40000, Dport: 443},
		Reply: TupleView{Src: remote6, Dst: uplink6, Sport: 443, Dport: 40000},
		SNAT:  true, Replied: true, Assured: true, Timeout: e.Timeout, Packets: [2]uint64{2, 2}, Bytes: e.Bytes}, e)
	require.EqualValues(t, 1, g.row("masquerade6 front").Packets, "counted on the first packet only")
	// the IPv4 masquerade rule of the same network did not see it
	require.Zero(t, g.row("masquerade front").Packets)
}

// UDP and ICMPv6 echo are masqueraded too; the echo reply comes back.
func TestNAT66MasqueradeUDPAndEcho(t *testing.T) {
	g := newRig6(t)
	requireFlow(t, g.forward6("front", UplinkName, udpPkt(t, ap(web6, 5000), ap(remote6, 53), "q")), ap(uplink6, 5000), ap(remote6, 53))
	requireFlow(t, g.forward6(UplinkName, "front", udpPkt(t, ap(remote6, 53), ap(uplink6, 5000), "a")), ap(remote6, 53), ap(web6, 5000))
	require.Equal(t, "ipv6", g.entry(ap(web6, 5000)).Family)

	requireFlow(t, g.forward6("front", UplinkName, ping(t, web6, remote6, 77, 1, false)), ap(uplink6, 77), ap(remote6, 77))
	requireFlow(t, g.forward6(UplinkName, "front", ping(t, remote6, uplink6, 77, 1, true)), ap(remote6, 77), ap(web6, 77))
	e := g.entry(ap(web6, 77))
	require.Equal(t, "icmpv6", e.Proto)
	require.True(t, e.Replied)

	// two endpoints with the same echo id: the second gets another id
	requireFlow(t, g.forward6("front", UplinkName, ping(t, web26, remote6, 77, 1, false)), ap(uplink6, g.entry(ap(web26, 77)).Reply.Dport), ap(remote6, g.entry(ap(web26, 77)).Reply.Dport))
	require.NotEqual(t, uint16(77), g.entry(ap(web26, 77)).Reply.Dport)
	out := g.forward6(UplinkName, "front", ping(t, remote6, uplink6, g.entry(ap(web26, 77)).Reply.Dport, 1, true))
	requireFlow(t, out, ap(remote6, 77), ap(web26, 77))

	// an echo reply nobody asked for is INVALID: dropped at forward
	r := g.pass(UplinkName, ping(t, remote6, web6, 99, 1, true))
	require.Equal(t, Drop, r.v.Action)
	require.Equal(t, stats.CtInvalid, r.v.Reason)
}

// A global subnet6 is not masqueraded by default (Docker routes it): the
// host reaches its endpoints by their addresses and they leave as they are.
func TestNAT66NoMasqueradeForRoutedSubnet(t *testing.T) {
	g := newRig6(t)
	ip := g.forward6("back", UplinkName, udpPkt(t, ap(db6, 5000), ap(remote6, 53), "q"))
	requireFlow(t, ip, ap(db6, 5000), ap(remote6, 53))
	require.False(t, g.entry(ap(db6, 5000)).SNAT)
}

// A published port answers on the uplink's address6 (DNAT to the
// endpoint's ip6), from the host side and from anywhere beyond; the reply
// leaves from the published address and port.
func TestNAT66PublishedPort(t *testing.T) {
	g := newRig6(t)
	for _, cli := range []netip.AddrPort{ap(host6, 3000), ap(remote6, 3001)} {
		ip := g.forward6(UplinkName, "front", tcpPkt(t, cli, ap(uplink6, 8080), fSYN, ""))
		requireFlow(t, ip, cli, ap(web6, 80))
		ip = g.forward6("front", UplinkName, tcpPkt(t, ap(web6, 80), cli, fSYN|fACK, ""))
		requireFlow(t, ip, ap(uplink6, 8080), cli)
		e := g.entry(cli)
		require.True(t, e.DNAT)
		require.False(t, e.SNAT)
		require.Equal(t, "SYN_RECV", e.State)
	}
	// UDP too
	requireFlow(t, g.forward6(UplinkName, "front", udpPkt(t, ap(host6, 4000), ap(uplink6, 5353), "q")), ap(host6, 4000), ap(web6, 53))
	// an unpublished port of the uplink address6 is the router's own
	require.Equal(t, "", g.pass(UplinkName, tcpPkt(t, ap(host6, 3000), ap(uplink6, 9999), fSYN, "")).out)
}

// Hairpin: an endpoint reaching a published port at the uplink's address6
// from its own network gets there, and the server sees the network's
// gateway6 as the client, as with Docker's hairpin masquerade.
func TestNAT66Hairpin(t *testing.T) {
	g := newRig6(t)
	ip := g.forward6("front", "front", tcpPkt(t, ap(web26, 5555), ap(uplink6, 8080), fSYN, ""))
	requireFlow(t, ip, ap(front6GW, 5555), ap(web6, 80))
	ip = g.forward6("front", "front", tcpPkt(t, ap(web6, 80), ap(front6GW, 5555), fSYN|fACK, ""))
	requireFlow(t, ip, ap(uplink6, 8080), ap(web26, 5555))
	e := g.entry(ap(web26, 5555))
	require.True(t, e.SNAT)
	require.True(t, e.DNAT)
	// and from another isolated network: published ports are accepted before isolation drops
	ip = g.forward6("back", "front", tcpPkt(t, ap(db6, 5556), ap(uplink6, 8080), fSYN, ""))
	requireFlow(t, ip, ap(db6, 5556), ap(web6, 80))
}

// Isolation and internal hold for IPv6 as for IPv4: no forwarding between
// isolated networks, nothing between an internal network and the uplink,
// no published port reached from an internal network.
func TestNAT66Isolation(t *testing.T) {
	g := newRig6(t)
	for _, tc := range []struct {
		in  string
		pkt []byte
	}{
		{"front", tcpPkt(t, ap(web6, 1), ap(db6, 5432), fSYN, "")},
		{"back", ping(t, db6, web6, 1, 1, false)},
		{"secure", udpPkt(t, ap(vault6, 1), ap(remote6, 53), "q")},
		{UplinkName, tcpPkt(t, ap(remote6, 1), ap(vault6, 22), fSYN, "")},
		{"secure", tcpPkt(t, ap(vault6, 1), ap(web6, 80), fSYN, "")},
	} {
		r := g.pass(tc.in, tc.pkt)
		require.Equal(t, Drop, r.v.Action, "from %s", tc.in)
		require.Equal(t, stats.Isolated, r.v.Reason)
	}
	// an internal network does not reach the published port through the uplink address6 either
	r := g.pass("secure", tcpPkt(t, ap(vault6, 1), ap(uplink6, 8080), fSYN, ""))
	require.Equal(t, "", r.out, "not translated: the router's own address")
	require.Zero(t, g.tr.Table.Len(), "no connection made")

	// open networks forward IPv6 to each other, untranslated
	open := newRig6(t, func(p *config.Plan) {
		for i := range p.Networks {
			p.Networks[i].Isolate = false
		}
	})
	requireFlow(t, open.forward6("front", "back", tcpPkt(t, ap(web6, 1), ap(db6, 5432), fSYN, "")), ap(web6, 1), ap(db6, 5432))
}

// ICMPv6 errors about a translated connection are RELATED: one coming
// back through the uplink about a masqueraded packet reaches the endpoint
// with the quoted packet as the endpoint sent it, and one an endpoint
// sends about a published port's packet leaves with the quote as the
// client sent it; every checksum (outer ICMPv6 over the pseudo header,
// quoted TCP/UDP) verifies.
func TestNAT66RelatedErrors(t *testing.T) {
	g := newRig6(t)
	sent := g.forward6("front", UplinkName, tcpPkt(t, ap(web6, 40000), ap(remote6, 443), fSYN, ""))
	router := netip.MustParseAddr("2001:db8:1::1")
	ptb := icmp6Error(t, router, uplink6, layers.ICMPv6TypePacketTooBig, 0, 1280, sent)
	ip := g.forward6(UplinkName, "front", ptb)
	d := decodeIP6(t, ip)
	require.Equal(t, web6.AsSlice(), []byte(d.ip.DstIP.To16()), "to the endpoint")
	require.Equal(t, router.AsSlice(), []byte(d.ip.SrcIP.To16()), "from the router that sent it")
	requireFlow(t, d.icmp.Payload[4:], ap(web6, 40000), ap(remote6, 443))

	// port unreachable from web about a datagram the host sent to a published port
	q := g.forward6(UplinkName, "front", udpPkt(t, ap(host6, 4000), ap(uplink6, 5353), "q"))
	unreach := icmp6Error(t, web6, host6, layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodePortUnreachable, 0, q)
	ip = g.forward6("front", UplinkName, unreach)
	d = decodeIP6(t, ip)
	require.Equal(t, uplink6.AsSlice(), []byte(d.ip.SrcIP.To16()), "from the published address")
	requireFlow(t, d.icmp.Payload[4:], ap(host6, 4000), ap(uplink6, 5353))

	// an error quoting nothing tracked is INVALID: dropped at forward
	stray := icmp6Error(t, router, web6, layers.ICMPv6TypeDestinationUnreachable, 0, 0, udpPkt(t, ap(web6, 1), ap(remote6, 2), "x"))
	r := g.pass(UplinkName, stray)
	require.Equal(t, stats.CtInvalid, r.v.Reason)
}

// An ICMPv6 error the router itself sends (Output6) quoting a packet
// prerouting translated is translated back to what its sender knows.
func TestNAT66OutputError(t *testing.T) {
	g := newRig6(t)
	syn := g.forward6(UplinkName, "front", tcpPkt(t, ap(host6, 3000), ap(uplink6, 8080), fSYN, ""))
	requireFlow(t, syn, ap(host6, 3000), ap(web6, 80))
	// the router cannot send it on (its MTU): packet too big back to the host
	msg := icmp6Error(t, uplink6, host6, layers.ICMPv6TypePacketTooBig, 0, 1280, syn)
	require.Equal(t, accept, g.tr.Output6(packet.IPv6(msg), UplinkName))
	requireChecksums6(t, msg)
	d := decodeIP6(t, msg)
	requireFlow(t, d.icmp.Payload[4:], ap(host6, 3000), ap(uplink6, 8080))
}

// [[rule]] src and dst take IPv6 prefixes; a rule of one family is not
// evaluated for the other's packets, one naming no address for both.
func TestRulesIPv6Prefixes(t *testing.T) {
	g := newRig6(t, func(p *config.Plan) {
		p.Rules = []config.Rule{
			{Hook: "forward", Action: "drop", Dst: netip.MustParsePrefix("2001:db8:99::/48"), Line: 10},
			{Hook: "forward", Action: "reject", Src: netip.MustParsePrefix("fd00:20::11/128"), Line: 11},
			{Hook: "forward", Action: "drop", Dst: netip.MustParsePrefix("198.51.100.0/24"), Proto: "udp", Line: 12},
			{Hook: "forward", Action: "drop", Proto: "udp", Dport: rule.Ports{6000, 6000}, Line: 13},
			{Hook: "forward", Action: "drop", Proto: "icmpv6", Line: 14},
		}
	})
	r := g.pass("front", tcpPkt(t, ap(web6, 1), ap(remote6, 443), fSYN, ""))
	require.Equal(t, Drop, r.v.Action)
	require.EqualValues(t, 1, g.row("rule line 10").Packets)
	require.Equal(t, Reject, g.pass("front", tcpPkt(t, ap(web26, 1), netip.AddrPortFrom(netip.MustParseAddr("2001:db8:7::1"), 443), fSYN, "")).v.Action)
	// the IPv4 rule does not see IPv6
	g.forward6("front", UplinkName, udpPkt(t, ap(web6, 1), netip.AddrPortFrom(netip.MustParseAddr("2001:db8:7::1"), 53), "q"))
	require.Zero(t, g.row("rule line 12").Packets)
	// and the IPv6 ones do not see IPv4
	g.forward("front", UplinkName, tcpPkt(t, ap(web2Addr, 1), ap(remoteAddr, 443), fSYN, ""))
	require.EqualValues(t, 1, g.row("rule line 11").Packets, "the IPv6 packet only")
	require.Equal(t, Drop, g.pass("front", udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "q")).v.Action)
	// a rule naming no address is of both families
	require.Equal(t, Drop, g.pass("front", udpPkt(t, ap(web6, 1), netip.AddrPortFrom(netip.MustParseAddr("2001:db8:7::1"), 6000), "q")).v.Action)
	require.Equal(t, Drop, g.pass("front", udpPkt(t, ap(webAddr, 1), netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), 6000), "q")).v.Action)
	require.EqualValues(t, 2, g.row("rule line 13").Packets)
	require.Equal(t, Drop, g.pass("front", ping(t, web6, netip.MustParseAddr("2001:db8:7::1"), 1, 1, false)).v.Action)
	g.forward("front", UplinkName, ping(t, webAddr, remoteAddr, 1, 1, false))
}

// fragments6 splits an IPv6 packet with no extension header into
// fragments (ID id) of its fragmentable part at the offsets cut (multiples
// of 8).
func fragments6(pkt []byte, id uint32, cut ...int) [][]byte {
	ip := packet.IPv6(pkt)
	cut = append(append([]int{0}, cut...), len(pkt)-packet.IPv6HeaderLen)
	var out [][]byte
	for i := 0; i+1 < len(cut); i++ {
		b := make([]byte, packet.IPv6HeaderLen+packet.IPv6FragmentLen+cut[i+1]-cut[i])
		packet.PutFragment6(b, ip, packet.IPv6HeaderLen, 6, cut[i], cut[i+1], i+2 < len(cut), id)
		out = append(out, b)
	}
	return out
}

// Fragments reach conntrack reassembled (the router runs package defrag
// first). An atomic fragment is tracked and translated by the transport
// header it holds; a fragment but the first, were one to come, cannot be
// tracked: INVALID, dropped at forward, as Linux's conntrack without
// nf_defrag_ipv6 would.
func TestNAT66Fragments(t *testing.T) {
	g := newRig6(t)
	payload := strings.Repeat("0123456789abcdef", 6)
	atomic := fragments6(udpPkt(t, ap(web6, 5000), ap(remote6, 53), payload), 0x1234)
	require.Len(t, atomic, 1)
	ip := g.forward6("front", UplinkName, atomic[0])
	_, isFrag := ip.Fragment()
	require.True(t, isFrag, "the fragment header stays")
	at, _, _ := ip.FragmentAt()
	require.Equal(t, uplink6.As16(), ip.Src())
	// gopacket recomputes the UDP checksum over the datagram the atomic fragment is
	whole := append(clone(ip[:packet.IPv6HeaderLen]), ip[at+packet.IPv6FragmentLen:]...)
	whole[6] = packet.ProtoUDP
	packet.IPv6(whole).SetPayloadLen(uint16(len(whole) - packet.IPv6HeaderLen))
	requireChecksums6(t, whole)
	requireFlow(t, whole, ap(uplink6, 5000), ap(remote6, 53))

	later := fragments6(udpPkt(t, ap(web6, 5001), ap(remote6, 53), payload), 7, 32)[1]
	r := g.pass("front", later)
	require.Equal(t, Drop, r.v.Action)
	require.Equal(t, stats.CtInvalid, r.v.Reason)
}

// Listings filter IPv6 connections by address as IPv4 ones, sort them
// after IPv4, and name their family.
func TestEntriesIPv6(t *testing.T) {
	g := newRig6(t)
	g.forward6("front", UplinkName, udpPkt(t, ap(web6, 5000), ap(remote6, 53), "q"))
	g.forward6("front", UplinkName, ping(t, web26, remote6, 9, 1, false))
	g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 5000), ap(remoteAddr, 53), "q"))
	es := g.tr.Table.Entries()
	require.Len(t, es, 3)
	require.Equal(t, []string{"ipv4 udp", "ipv6 icmpv6", "ipv6 udp"},
		[]string{es[0].Family + " " + es[0].Proto, es[1].Family + " " + es[1].Proto, es[2].Family + " " + es[2].Proto})
	count := func(f Filter) int {
		n := 0
		require.NoError(t, g.tr.Table.Each(f, func(*Entry) error { n++; return nil }))
		return n
	}
	require.Equal(t, 1, count(Filter{Src: web6}))
	require.Equal(t, 2, count(Filter{Dst: remote6}))
	require.Equal(t, 1, count(Filter{Proto: packet.ProtoICMPv6}))
	require.Equal(t, 0, count(Filter{Src: web6, Proto: packet.ProtoTCP}))
	require.Equal(t, 1, count(Filter{Src: webAddr}))
	require.Equal(t, 1, count(Filter{Src: netip.AddrFrom16(webAddr.As16())}), "an IPv4-mapped address is the IPv4 one")
	require.Equal(t, 2, g.tr.Table.RemoveAddr6(remote6.As16()))
	require.Equal(t, 1, g.tr.Table.Len())
}

// [[rule]] snat and dnat take IPv6 targets: the user's NAT66 comes before
// the built-in masquerade6, as iptables' user rules do.
func TestNAT66UserRules(t *testing.T) {
	g := newRig6(t, func(p *config.Plan) {
		p.Rules = []config.Rule{
			{Hook: "postrouting", Action: "snat", Src: netip.MustParsePrefix("fd00:20::11/128"), Out: UplinkName, To: "[fd00:ff::99]:4000", Line: 20},
			{Hook: "prerouting", Action: "dnat", In: UplinkName, Proto: "tcp", Dport: rule.Ports{2222, 2222}, To: "[fd00:20::10]:22", Line: 21},
		}
	})
	ip := g.forward6("front", UplinkName, udpPkt(t, ap(web26, 5000), ap(remote6, 53), "q"))
	requireFlow(t, ip, ap(netip.MustParseAddr("fd00:ff::99"), 4000), ap(remote6, 53))
	requireFlow(t, g.forward6(UplinkName, "front", udpPkt(t, ap(remote6, 53), ap(netip.MustParseAddr("fd00:ff::99"), 4000), "a")),
		ap(remote6, 53), ap(web26, 5000))
	require.EqualValues(t, 1, g.row("rule line 20").Packets)
	require.Zero(t, g.row("masquerade6 front").Packets, "the user's rule came first")

	ip = g.forward6(UplinkName, "front", tcpPkt(t, ap(host6, 3000), ap(uplink6, 2222), fSYN, ""))
	requireFlow(t, ip, ap(host6, 3000), ap(web6, 22))
	// the IPv4 side has no such rule: IPv4 to 2222 stays the router's
	require.Equal(t, "", g.pass(UplinkName, tcpPkt(t, ap(hostAddr, 3000), ap(uplinkAddr, 2222), fSYN, "")).out)
}
