package nat

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// withExt6 inserts an 8-byte extension header of protocol proto (PadN
// options: hop-by-hop or destination options) after pkt's fixed header.
func withExt6(pkt []byte, proto uint8) []byte {
	ext := []byte{pkt[6], 0, 1, 4, 0, 0, 0, 0}
	b := append(append(clone(pkt[:packet.IPv6HeaderLen]), ext...), pkt[packet.IPv6HeaderLen:]...)
	b[6] = proto
	packet.IPv6(b).SetPayloadLen(uint16(len(b) - packet.IPv6HeaderLen))
	return b
}

// requireQuotedUDP6 decodes the packet an ICMPv6 error quotes (extension
// headers included, with gopacket) and checks its UDP ends and checksum.
func requireQuotedUDP6(t *testing.T, msg []byte, src, dst netip.AddrPort) {
	t.Helper()
	d := decodeIP6(t, msg)
	require.NotNil(t, d.icmp)
	requireChecksums6(t, msg) // the error's own checksum
	p := gopacket.NewPacket(d.icmp.Payload[4:], layers.LayerTypeIPv6, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	require.True(t, ok, "the quote decodes to UDP through its extension header: %v", p)
	s, _ := netip.AddrFromSlice(ip.SrcIP)
	a, _ := netip.AddrFromSlice(ip.DstIP)
	require.Equal(t, src, ap(s, uint16(u.SrcPort)), "quoted source")
	require.Equal(t, dst, ap(a, uint16(u.DstPort)), "quoted destination")
	c := *u
	require.NoError(t, c.SetNetworkLayerForChecksum(ip))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	require.Equal(t, c.Checksum, u.Checksum, "quoted UDP checksum")
}

// ICMPv6 errors quoting a packet with extension headers (destination
// options, hop-by-hop) are RELATED to its connection and translated, as
// Linux walks the quote's extension headers: one coming back to a
// masqueraded endpoint, and one the router sends itself about a packet
// to a published port.
func TestNAT66RelatedErrorsQuotingExtensionHeaders(t *testing.T) {
	g := newRig6(t)
	for _, proto := range []uint8{packet.ProtoDstOpts6, packet.ProtoHopByHop} {
		sent := g.forward6("front", UplinkName, withExt6(udpPkt(t, ap(web6, 40000+uint16(proto)), ap(remote6, 53), "query"), proto))
		require.Equal(t, uplink6.As16(), sent.Src(), "masqueraded")
		router := netip.MustParseAddr("2001:db8:1::1")
		msg := icmp6Error(t, router, uplink6, layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeAddressUnreachable, 0, sent)
		r := g.pass(UplinkName, msg)
		require.Equal(t, accept, r.v, "RELATED, not INVALID")
		require.Equal(t, "front", r.out)
		require.Equal(t, web6.As16(), packet.IPv6(r.ip).Dst())
		requireQuotedUDP6(t, r.ip, ap(web6, 40000+uint16(proto)), ap(remote6, 53))
	}

	// the router's own error (Output6) about a packet DNATed to a published port
	q := g.forward6(UplinkName, "front", withExt6(udpPkt(t, ap(host6, 4000), ap(uplink6, 5353), "q"), packet.ProtoHopByHop))
	msg := icmp6Error(t, uplink6, host6, layers.ICMPv6TypePacketTooBig, 0, 1280, q)
	require.Equal(t, accept, g.tr.Output6(packet.IPv6(msg), UplinkName))
	requireQuotedUDP6(t, msg, ap(host6, 4000), ap(uplink6, 5353))
}
