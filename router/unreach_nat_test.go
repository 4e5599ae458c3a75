package router

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

// A packet masqueraded before its next hop failed to resolve: the address
// unreachable goes to the endpoint that sent it and quotes its packet as
// it sent it (source address and port before NAT), with checksums right;
// nothing solicits the router's own address.
func TestMasquerade6NeighbourFailure(t *testing.T) {
	g := newRig6(t, 1500, func(p *config.Plan) { p.Networks[0].Masquerade6 = true })
	g.learn6(t, "gw/front", web6, webMAC)
	dst := netip.MustParseAddr("fd00:ff::99")
	g.ports["gw/front"].Input(udp6To(t, webMAC, gwMAC("gw/front"), web6, dst, 10, 64), packet.Offload{})
	for range 3 {
		g.clk.Advance(time.Second)
		g.r.Tick()
	}
	for _, f := range g.links["uplink"].take() {
		ns := decode(f).Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
		require.Equal(t, dst.String(), ns.TargetAddress.String())
	}
	out := g.links["gw/front"].take()
	require.Len(t, out, 1, "the address unreachable reaches the endpoint")
	_, m := requireICMPv6(t, out[0], layers.ICMPv6TypeDestinationUnreachable, 3, addr6["gw/front"].Addr(), web6)
	q := gopacket.NewPacket(m.Payload[4:], layers.LayerTypeIPv6, gopacket.Default)
	qip := q.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.Equal(t, web6.String(), qip.SrcIP.String(), "the quote has the endpoint's own source")
	require.Equal(t, dst.String(), qip.DstIP.String())
	require.EqualValues(t, 4000, q.Layer(layers.LayerTypeUDP).(*layers.UDP).SrcPort)
	requireUDP6Checksum(t, q)
	require.EqualValues(t, 1, g.stats["uplink"].Dropped(stats.NeighFailed))
}

// The same for IPv4: host unreachable to the masqueraded endpoint,
// quoting its own packet.
func TestMasqueradeARPFailure(t *testing.T) {
	g := newRig(t, false, 1500, func(p *config.Plan) { p.Networks[0].Masquerade = true })
	g.learn(t, "gw/front", webIP, webMAC)
	dst := netip.MustParseAddr("203.0.113.9")
	g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dst, 10), packet.Offload{})
	for range 4 {
		g.clk.Advance(time.Second)
		g.r.Tick()
	}
	require.Len(t, g.links["uplink"].take(), 3, "three ARP requests for the next hop")
	out := g.links["gw/front"].take()
	require.Len(t, out, 1, "the host unreachable reaches the endpoint")
	requireChecksumsValid(t, out[0])
	p := decode(out[0])
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, webIP.String(), ip.DstIP.String())
	ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.Equal(t, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeHost), ic.TypeCode)
	// the quote, behind an Ethernet header, checked as a frame
	q := append(make([]byte, packet.EthernetHeaderLen), ic.Payload...)
	packet.Ethernet(q).SetEtherType(packet.EtherTypeIPv4)
	requireChecksumsValid(t, q)
	qp := decode(q)
	require.Equal(t, webIP.String(), qp.Layer(layers.LayerTypeIPv4).(*layers.IPv4).SrcIP.String(), "the quote has the endpoint's own source")
	require.EqualValues(t, 4000, qp.Layer(layers.LayerTypeUDP).(*layers.UDP).SrcPort)
	require.EqualValues(t, 1, g.stats["uplink"].Dropped(stats.NeighFailed))
}
