package router

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

var (
	addr6 = map[string]netip.Prefix{
		"gw/front": netip.MustParsePrefix("fd00:20::1/64"),
		"gw/back":  netip.MustParsePrefix("fd00:21::1/64"),
		"uplink":   netip.MustParsePrefix("fd00:ff::2/64"),
	}
	host6 = netip.MustParseAddr("fd00:ff::1")
	web6  = netip.MustParseAddr("fd00:20::10")
	db6   = netip.MustParseAddr("fd00:21::20")
)

// newRig6 is newRig with open networks and IPv6 on every port: front
// fd00:20::/64, back fd00:21::/64, the uplink fd00:ff::2/64 with a default
// route via fd00:ff::1.
func newRig6(t *testing.T, mtuBack int, edit ...func(*config.Plan)) *rig {
	t.Helper()
	return buildRig(t, false, mtuBack, true, append([]func(*config.Plan){dualStack}, edit...)...)
}

// dualStack gives the rig's plan the IPv6 addresses of its ports, for the
// rules compiled from it.
func dualStack(p *config.Plan) {
	for i, name := range []string{"gw/front", "gw/back"} {
		p.Networks[i].Subnet6, p.Networks[i].Gateway6 = addr6[name].Masked(), addr6[name].Addr()
	}
	p.Uplink.Address6, p.Uplink.HostAddress6 = addr6["uplink"], netip.PrefixFrom(host6, 64)
}

func gwMAC(port string) packet.MAC {
	return macFor(map[string]netip.Prefix{"gw/front": frontGW, "gw/back": backGW, "uplink": uplinkIP}[port].Addr())
}

// ns6 is a neighbour solicitation for target from (smac, src), with the
// source link-layer option, to target's solicited-node group.
func ns6(t testing.TB, smac packet.MAC, src, target netip.Addr, hop uint8) []byte {
	group := packet.SolicitedNode(target.As16())
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(packet.MulticastMAC6(group)), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: group[:]}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	_ = m.SetNetworkLayerForChecksum(ip)
	body := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice(), Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: hw(smac)}}}
	return serialize(t, eth, ip, m, body)
}

// na6 is a solicited neighbour advertisement for (smac, src) to dst at dmac.
func na6(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	_ = m.SetNetworkLayerForChecksum(ip)
	body := &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: src.AsSlice(), Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: hw(smac)}}}
	return serialize(t, eth, ip, m, body)
}

// learn6 makes the router know a neighbour by its solicitation of the
// port's gateway address.
func (g *rig) learn6(t *testing.T, port string, ip netip.Addr, mac packet.MAC) {
	g.ports[port].Input(ns6(t, mac, ip, addr6[port].Addr(), 255), packet.Offload{})
	require.Len(t, g.links[port].take(), 1, "the advertisement")
}

func udp6To(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr, payload int, hop uint8) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, udp, gopacket.Payload(make([]byte, payload)))
}

func echo6(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr, typ uint8) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = m.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, m, &layers.ICMPv6Echo{Identifier: 9, SeqNumber: 1}, gopacket.Payload("ping6-payload"))
}

// requireICMPv6 decodes an ICMPv6 message from frame, checks its checksum
// with gopacket's own computation, its type and code, and its addresses.
func requireICMPv6(t *testing.T, frame []byte, typ, code uint8, from, to netip.Addr) (*layers.IPv6, *layers.ICMPv6) {
	t.Helper()
	p := decode(frame)
	ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.True(t, ok, "an IPv6 packet: %v", p)
	m, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	require.True(t, ok, "an ICMPv6 message: %v", p)
	c := *m
	require.NoError(t, c.SetNetworkLayerForChecksum(ip))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(m.Payload)))
	require.Equal(t, m.Checksum, c.Checksum, "ICMPv6 checksum")
	require.Equal(t, typ, m.TypeCode.Type(), "type %v", m.TypeCode)
	require.Equal(t, code, m.TypeCode.Code(), "code %v", m.TypeCode)
	require.Equal(t, from.String(), ip.SrcIP.String())
	require.Equal(t, to.String(), ip.DstIP.String())
	return ip, m
}

func TestGatewayAnswersNeighbourSolicitation(t *testing.T) {
	g := newRig6(t, 1500)
	ll := netip.AddrFrom16(gwMAC("gw/front").LinkLocal6())
	for _, target := range []netip.Addr{addr6["gw/front"].Addr(), ll} {
		g.ports["gw/front"].Input(ns6(t, webMAC, web6, target, 255), packet.Offload{})
		out := g.links["gw/front"].take()
		require.Len(t, out, 1, target)
		ip, _ := requireICMPv6(t, out[0], layers.ICMPv6TypeNeighborAdvertisement, 0, target, web6)
		require.EqualValues(t, 255, ip.HopLimit)
		p := decode(out[0])
		na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		require.True(t, na.Solicited() && na.Router())
		require.Equal(t, target.AsSlice(), []byte(na.TargetAddress))
		require.Equal(t, []byte(hw(gwMAC("gw/front"))), []byte(na.Options[0].Data))
		require.Equal(t, hw(webMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
	}
	// nothing for an address the router does not own, or for another
	// port's address, and a solicitation that crossed a router is dropped
	g.ports["gw/front"].Input(ns6(t, webMAC, web6, netip.MustParseAddr("fd00:20::99"), 255), packet.Offload{})
	g.ports["gw/front"].Input(ns6(t, webMAC, web6, addr6["gw/back"].Addr(), 255), packet.Offload{})
	g.ports["gw/front"].Input(ns6(t, webMAC, web6, addr6["gw/front"].Addr(), 64), packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.BadND))
	// the neighbour is learned: the route to web6 resolves without asking
	entries := g.ports["gw/front"].Neighbours6().Entries()
	require.Len(t, entries, 1)
	require.Equal(t, web6.String(), entries[0].IP)
	// `uswitch neigh` lists it after the ARP entries
	g.learn(t, "gw/front", webIP, webMAC)
	var ips []string
	for _, e := range g.ports["gw/front"].NeighbourEntries() {
		ips = append(ips, e.IP)
	}
	require.Equal(t, []string{webIP.String(), web6.String()}, ips)
}

// UDP to the uplink's address is answered with ICMPv6 port unreachable:
// nothing listens there on IPv6. (To a gateway's, it is the host's: the
// prerouting DNAT sends it on to host_address6, as for IPv4.)
func TestLocalPortUnreachable6(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	in := udp6To(t, webMAC, gwMAC("gw/front"), web6, addr6["uplink"].Addr(), 10, 64)
	g.ports["gw/front"].Input(in, packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	_, m := requireICMPv6(t, out[0], layers.ICMPv6TypeDestinationUnreachable, 4, addr6["uplink"].Addr(), web6)
	require.Equal(t, in[packet.EthernetHeaderLen:], m.Payload[4:])

	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, addr6["gw/front"].Addr(), 10, 64), packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	out = g.links["uplink"].take()
	require.Len(t, out, 1, "a solicitation of the host side, the packet queued for it")
	ns := decode(out[0]).Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	require.Equal(t, host6.AsSlice(), []byte(ns.TargetAddress))
}

func TestGatewayAnswersPing6(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	ll := netip.AddrFrom16(gwMAC("gw/front").LinkLocal6())
	for _, target := range []netip.Addr{addr6["gw/front"].Addr(), addr6["gw/back"].Addr(), addr6["uplink"].Addr(), ll} {
		g.ports["gw/front"].Input(echo6(t, webMAC, gwMAC("gw/front"), web6, target, layers.ICMPv6TypeEchoRequest), packet.Offload{})
		out := g.links["gw/front"].take()
		require.Len(t, out, 1, target)
		ip, _ := requireICMPv6(t, out[0], layers.ICMPv6TypeEchoReply, 0, target, web6)
		require.EqualValues(t, 64, ip.HopLimit)
		p := decode(out[0])
		e := p.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo)
		require.EqualValues(t, 9, e.Identifier)
		require.Equal(t, "ping6-payload", string(out[0][len(out[0])-13:]))
		require.Equal(t, hw(webMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
		require.Equal(t, hw(gwMAC("gw/front")), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC)
	}
	// a bad checksum is dropped and counted
	f := echo6(t, webMAC, gwMAC("gw/front"), web6, addr6["gw/front"].Addr(), layers.ICMPv6TypeEchoRequest)
	f[len(f)-1] ^= 0xff
	g.ports["gw/front"].Input(f, packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.BadChecksum))
}

func TestForward6BetweenNetworks(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/back", db6, dbMAC)
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 100, 64), packet.Offload{})
	out := g.links["gw/back"].take()
	require.Len(t, out, 1)
	p := decode(out[0])
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	require.Equal(t, hw(gwMAC("gw/back")), eth.SrcMAC)
	require.Equal(t, hw(dbMAC), eth.DstMAC)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.EqualValues(t, 63, ip.HopLimit)
	requireUDP6Checksum(t, p)
	require.Empty(t, g.links["gw/front"].take())

	// to the uplink: the next hop is the host side, resolved first
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, netip.MustParseAddr("2001:db8::1"), 10, 64), packet.Offload{})
	out = g.links["uplink"].take()
	require.Len(t, out, 1)
	ns := decode(out[0]).Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	require.Equal(t, host6.AsSlice(), []byte(ns.TargetAddress))
}

// The hooks are conntrack's and the rules', as for IPv4: isolated networks
// do not reach each other over IPv6 either, but reach the uplink; an
// internal network reaches no uplink.
func TestIsolation6(t *testing.T) {
	g := buildRig(t, true, 1500, true, dualStack, func(p *config.Plan) { p.Networks[1].Internal = true })
	g.learn6(t, "gw/back", db6, dbMAC)
	g.learn6(t, "uplink", host6, hostMAC)
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 64), packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	require.Empty(t, g.links["gw/front"].take(), "dropped silently, like Docker's isolation chains")
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.Isolated))
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, netip.MustParseAddr("2001:db8::1"), 10, 64), packet.Offload{})
	require.Len(t, g.links["uplink"].take(), 1, "an isolated network reaches the uplink")
	g.ports["gw/back"].Input(udp6To(t, dbMAC, gwMAC("gw/back"), db6, netip.MustParseAddr("2001:db8::1"), 10, 64), packet.Offload{})
	require.Empty(t, g.links["uplink"].take(), "an internal one does not")
}

// masquerade6 translates the source of what leaves through the uplink to
// address6, through the router's IPv6 path, and the reply comes back to
// the endpoint; checksums stay right.
func TestMasquerade6ThroughTheRouter(t *testing.T) {
	g := newRig6(t, 1500, func(p *config.Plan) { p.Networks[0].Masquerade6 = true })
	g.learn6(t, "gw/front", web6, webMAC)
	g.learn6(t, "uplink", host6, hostMAC)
	remote := netip.MustParseAddr("2001:db8::1")
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, remote, 10, 64), packet.Offload{})
	out := g.links["uplink"].take()
	require.Len(t, out, 1)
	p := decode(out[0])
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.Equal(t, addr6["uplink"].Addr().String(), ip.SrcIP.String())
	requireUDP6Checksum(t, p)

	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	eth := &layers.Ethernet{SrcMAC: hw(hostMAC), DstMAC: hw(gwMAC("uplink")), EthernetType: layers.EthernetTypeIPv6}
	rip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: remote.AsSlice(), DstIP: ip.SrcIP}
	ru := &layers.UDP{SrcPort: u.DstPort, DstPort: u.SrcPort}
	_ = ru.SetNetworkLayerForChecksum(rip)
	g.ports["uplink"].Input(serialize(t, eth, rip, ru, gopacket.Payload("reply")), packet.Offload{})
	out = g.links["gw/front"].take()
	require.Len(t, out, 1)
	p = decode(out[0])
	require.Equal(t, web6.String(), p.Layer(layers.LayerTypeIPv6).(*layers.IPv6).DstIP.String())
	require.EqualValues(t, 4000, p.Layer(layers.LayerTypeUDP).(*layers.UDP).DstPort)
	requireUDP6Checksum(t, p)
}

// requireUDP6Checksum checks a decoded packet's UDP checksum against
// gopacket's computation.
func requireUDP6Checksum(t *testing.T, p gopacket.Packet) {
	t.Helper()
	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	c := *u
	require.NoError(t, c.SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	require.Equal(t, u.Checksum, c.Checksum, "UDP checksum")
}

func TestNeighbourResolution6QueuesAndReleases(t *testing.T) {
	g := newRig6(t, 1500)
	for range 3 {
		g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 64), packet.Offload{})
	}
	out := g.links["gw/back"].take()
	require.Len(t, out, 1, "one solicitation for three packets")
	ip, _ := requireICMPv6(t, out[0], layers.ICMPv6TypeNeighborSolicitation, 0, addr6["gw/back"].Addr(), netip.AddrFrom16(packet.SolicitedNode(db6.As16())))
	require.EqualValues(t, 255, ip.HopLimit)
	require.Equal(t, "33:33:ff:00:00:20", decode(out[0]).Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC.String())
	require.Equal(t, "INCOMPLETE", g.ports["gw/back"].Neighbours6().Entries()[0].State.String())

	g.ports["gw/back"].Input(na6(t, dbMAC, gwMAC("gw/back"), db6, addr6["gw/back"].Addr()), packet.Offload{})
	out = g.links["gw/back"].take()
	require.Len(t, out, 3, "the queued packets leave")
	for _, f := range out {
		p := decode(f)
		require.Equal(t, hw(dbMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
		require.EqualValues(t, 63, p.Layer(layers.LayerTypeIPv6).(*layers.IPv6).HopLimit)
	}
	require.Equal(t, "REACHABLE", g.ports["gw/back"].Neighbours6().Entries()[0].State.String())
}

func TestNeighbourFailure6SendsAddressUnreachable(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	in := udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 64)
	g.ports["gw/front"].Input(in, packet.Offload{})
	for range 3 {
		g.clk.Advance(time.Second)
		g.r.Tick()
	}
	require.Len(t, g.links["gw/back"].take(), 3, "three solicitations")
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	_, m := requireICMPv6(t, out[0], layers.ICMPv6TypeDestinationUnreachable, 3, addr6["gw/front"].Addr(), web6)
	require.EqualValues(t, 1, g.stats["gw/back"].Dropped(stats.NeighFailed))
	// the quote is the packet as it left (hop limit decremented)
	q := packet.IPv6(m.Payload[4:])
	require.Equal(t, db6.As16(), q.Dst())
}

func TestHopLimitExceeded6(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	g.learn6(t, "gw/back", db6, dbMAC)
	in := udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 30, 1)
	g.ports["gw/front"].Input(in, packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	ip, m := requireICMPv6(t, out[0], layers.ICMPv6TypeTimeExceeded, 0, addr6["gw/front"].Addr(), web6)
	require.EqualValues(t, 64, ip.HopLimit)
	require.Equal(t, in[packet.EthernetHeaderLen:], m.Payload[4:], "the whole packet quoted")
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.TTLExceeded))

	// hop limit 2 passes with 1
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 30, 2), packet.Offload{})
	out = g.links["gw/back"].take()
	require.Len(t, out, 1)
	require.EqualValues(t, 1, decode(out[0]).Layer(layers.LayerTypeIPv6).(*layers.IPv6).HopLimit)
}

func TestNoRoute6(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	g.r.RemovePort(g.ports["uplink"]) // and the default route with it
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, netip.MustParseAddr("2001:db8::1"), 10, 64), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireICMPv6(t, out[0], layers.ICMPv6TypeDestinationUnreachable, 0, addr6["gw/front"].Addr(), web6)
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.NoRoute))
}

// A router never fragments IPv6: a packet larger than the egress MTU is
// answered with packet too big naming it (RFC 8200 5), not rate limited,
// and the error fits the minimum MTU.
func TestPacketTooBig6(t *testing.T) {
	g := newRig6(t, 1280)
	g.learn6(t, "gw/front", web6, webMAC)
	g.learn6(t, "gw/back", db6, dbMAC)
	for range 10 {
		g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 1400, 64), packet.Offload{})
	}
	require.Empty(t, g.links["gw/back"].take())
	out := g.links["gw/front"].take()
	require.Len(t, out, 10, "not rate limited")
	ip, m := requireICMPv6(t, out[0], layers.ICMPv6TypePacketTooBig, 0, addr6["gw/front"].Addr(), web6)
	require.EqualValues(t, 1280, uint32(m.Payload[0])<<24|uint32(m.Payload[1])<<16|uint32(m.Payload[2])<<8|uint32(m.Payload[3]))
	require.Equal(t, packet.IPv6MinMTU, packet.IPv6HeaderLen+int(ip.Length), "the error is as large as the minimum MTU allows")
	require.EqualValues(t, 10, g.stats["gw/front"].Dropped(stats.PacketTooBig))

	// exactly the MTU passes
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 1280-48, 64), packet.Offload{})
	require.Len(t, g.links["gw/back"].take(), 1)
}

func TestICMPv6ErrorsRateLimited(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	for range 20 {
		g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 1), packet.Offload{})
	}
	require.Len(t, g.links["gw/front"].take(), 6, "burst of 6 per destination")
	g.clk.Advance(time.Second)
	for range 5 {
		g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 1), packet.Offload{})
	}
	require.Len(t, g.links["gw/front"].take(), 1, "then one a second")
	require.EqualValues(t, 25, g.stats["gw/front"].Dropped(stats.TTLExceeded))
}

// No ICMPv6 error about an ICMPv6 error, nor to a multicast or
// unspecified source, nor about a packet to a multicast group (RFC 4443
// 2.4(e)).
func TestNoICMPv6ErrorAboutErrorOrMulticast(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/front", web6, webMAC)
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(gwMAC("gw/front")), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 1, NextHeader: layers.IPProtocolICMPv6, SrcIP: web6.AsSlice(), DstIP: db6.AsSlice()}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, 4)}
	_ = m.SetNetworkLayerForChecksum(ip)
	g.ports["gw/front"].Input(serialize(t, eth, ip, m, gopacket.Payload(make([]byte, 52))), packet.Offload{})
	require.Empty(t, g.links["gw/front"].take(), "an error about an error")
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.TTLExceeded))

	for _, src := range []string{"ff02::1", "::"} {
		g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), netip.MustParseAddr(src), db6, 10, 1), packet.Offload{})
		require.Empty(t, g.links["gw/front"].take(), src)
	}
	require.EqualValues(t, 2, g.stats["gw/front"].Dropped(stats.Martian))

	// an echo request with hop limit 1 is answered, an echo reply is not an error
	g.ports["gw/front"].Input(func() []byte {
		f := echo6(t, webMAC, gwMAC("gw/front"), web6, db6, layers.ICMPv6TypeEchoRequest)
		f[packet.EthernetHeaderLen+7] = 1
		return f
	}(), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireICMPv6(t, out[0], layers.ICMPv6TypeTimeExceeded, 0, addr6["gw/front"].Addr(), web6)
}

func TestLinkLocal6NotForwarded(t *testing.T) {
	g := newRig6(t, 1500)
	g.learn6(t, "gw/back", db6, dbMAC)
	webLL := netip.AddrFrom16(webMAC.LinkLocal6())
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), webLL, db6, 10, 64), packet.Offload{})
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, netip.AddrFrom16(dbMAC.LinkLocal6()), 10, 64), packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	require.EqualValues(t, 2, g.stats["gw/front"].Dropped(stats.NotForwarded))
}

func TestMalformed6DroppedAndCounted(t *testing.T) {
	g := newRig6(t, 1500)
	good := udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 64)
	long := append([]byte(nil), good...)
	long[packet.EthernetHeaderLen+4] = 0xff // payload length beyond the frame
	ver := append([]byte(nil), good...)
	ver[packet.EthernetHeaderLen] = 0x40
	loop := udp6To(t, webMAC, gwMAC("gw/front"), netip.MustParseAddr("::1"), db6, 10, 64)
	for _, c := range []struct {
		name   string
		frame  []byte
		reason stats.Reason
	}{
		{"short", good[:30], stats.BadIPHeader},
		{"payload length", long, stats.BadIPHeader},
		{"version", ver, stats.BadIPHeader},
		{"loopback source", loop, stats.Martian},
	} {
		before := g.stats["gw/front"].Dropped(c.reason)
		g.ports["gw/front"].Input(c.frame, packet.Offload{})
		require.Equal(t, before+1, g.stats["gw/front"].Dropped(c.reason), c.name)
	}
	for _, l := range g.links {
		require.Empty(t, l.take())
	}
}

func TestRoutes6(t *testing.T) {
	g := newRig6(t, 1500)
	rs := g.r.Routes()
	require.Len(t, rs, 8)
	require.Equal(t, "::/0", rs[7].Prefix.String())
	require.Equal(t, host6.String(), rs[7].Via)
	for _, c := range []struct{ dst, port string }{{"fd00:20::77", "gw/front"}, {"fd00:21::4", "gw/back"}, {"fd00:ff::1", "uplink"}, {"2001:db8::1", "uplink"}, {"fd00:22::1", "uplink"}} {
		p, _, ok := g.r.lay.Load().routes6.lookup(netip.MustParseAddr(c.dst).As16())
		require.True(t, ok)
		require.Equal(t, c.port, p.Name, c.dst)
	}
	// a port without IPv6 takes none
	g2 := newRig(t, false, 1500)
	require.Nil(t, g2.ports["gw/front"].Neighbours6())
	g2.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 10, 64), packet.Offload{})
	for _, l := range g2.links {
		require.Empty(t, l.take())
	}
}

func routedSetup6(t testing.TB) (*Port, []byte) {
	clk := &clock.Fake{}
	r := New(clk, nil, tracker(t, testPlan(false), clk))
	front, _ := r.AddPort(PortConfig{Name: "gw/front", Network: "front", Addr: frontGW, Addr6: addr6["gw/front"], MTU: 1500, MAC: gwMAC("gw/front")}, discard{}, &stats.Port{})
	back, _ := r.AddPort(PortConfig{Name: "gw/back", Network: "back", Addr: backGW, Addr6: addr6["gw/back"], MTU: 1500, MAC: gwMAC("gw/back")}, discard{}, &stats.Port{})
	back.Input(ns6(t, dbMAC, db6, addr6["gw/back"].Addr(), 255), packet.Offload{})
	// the same 64 bytes of UDP payload as routedSetup's IPv4 packet
	return front, udp6To(t, webMAC, gwMAC("gw/front"), web6, db6, 64, 255)
}

// BenchmarkRouterForward6 is BenchmarkRouterForward for IPv6: one UDP
// packet with 64 bytes of payload routed between two networks.
func BenchmarkRouterForward6(b *testing.B) { benchForward(b, routedSetup6) }

func FuzzPortInput6(f *testing.F) {
	f.Add(udp6To(f, webMAC, gwMAC("gw/front"), web6, db6, 10, 64))
	f.Add(udp6To(f, webMAC, gwMAC("gw/front"), web6, db6, 10, 1))
	f.Add(echo6(f, webMAC, gwMAC("gw/front"), web6, addr6["gw/front"].Addr(), layers.ICMPv6TypeEchoRequest))
	f.Add(ns6(f, webMAC, web6, addr6["gw/front"].Addr(), 255))
	f.Add(na6(f, webMAC, gwMAC("gw/front"), web6, addr6["gw/front"].Addr()))
	// TCP to a closed port of the router's: the host stage's reset
	syn := tcpTo(f, webMAC, gwMAC("gw/front"), web6, addr6["uplink"].Addr(), layers.TCP{SrcPort: 40000, DstPort: 22, Seq: 1, SYN: true})
	f.Add(syn)
	f.Add(withDstOpts6(syn))
	f.Fuzz(func(t *testing.T, b []byte) {
		g := newRig6(t, 1280)
		g.learn6(t, "gw/back", db6, dbMAC)
		g.ports["gw/front"].Input(b, packet.Offload{})
		g.ports["uplink"].Input(b, packet.Offload{})
		g.r.Tick()
	})
}

func TestAddr128Predicates(t *testing.T) {
	for _, c := range []struct {
		a                          string
		martian, multicast, linkLL bool
	}{
		{"::", true, false, false},
		{"::1", true, false, false},
		{"::2", false, false, false},
		{"::ffff:10.0.0.1", true, false, false},
		{"::fffe:10.0.0.1", false, false, false},
		{"fe80::1", false, false, true},
		{"febf::1", false, false, true},
		{"fec0::1", false, false, false},
		{"ff02::1", false, true, false},
		{"fd00:20::1", false, false, false},
		{"2001:db8::1", false, false, false},
	} {
		a := bits128(netip.MustParseAddr(c.a).As16())
		require.Equal(t, c.martian, a.martian(), c.a)
		require.Equal(t, c.multicast, a.multicast(), c.a)
		require.Equal(t, c.linkLL, a.linkLocal(), c.a)
		require.Equal(t, packet.IsLinkLocal6(netip.MustParseAddr(c.a).As16()), a.linkLocal(), c.a)
	}
}
