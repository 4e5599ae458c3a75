package nat

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

// The test topology made dual-stack: front fd00:20::/64 (a ULA subnet6,
// so masquerade6 by default) with web and web2, back fd00:21::/64 (no
// masquerade6) with db, secure fd00:22::/64 (internal) with vault, the
// uplink's address6 fd00:ff::2/64 whose host side is fd00:ff::1, and
// remote6 somewhere beyond the host.
var (
	uplink6  = netip.MustParseAddr("fd00:ff::2")
	host6    = netip.MustParseAddr("fd00:ff::1")
	remote6  = netip.MustParseAddr("2001:db8:99::7")
	front6GW = netip.MustParseAddr("fd00:20::1")
	back6GW  = netip.MustParseAddr("fd00:21::1")
	web6     = netip.MustParseAddr("fd00:20::10")
	web26    = netip.MustParseAddr("fd00:20::11")
	db6      = netip.MustParseAddr("fd00:21::20")
	vault6   = netip.MustParseAddr("fd00:22::30")
)

// dual gives the test plan its IPv6 side.
func dual(p *config.Plan) {
	p.Uplink.Address6 = netip.PrefixFrom(uplink6, 64)
	p.Uplink.HostAddress6 = netip.PrefixFrom(host6, 64)
	six := map[string]struct {
		subnet string
		gw     netip.Addr
		masq   bool
	}{"front": {"fd00:20::/64", front6GW, true}, "back": {"fd00:21::/64", back6GW, false}, "secure": {"fd00:22::/64", netip.MustParseAddr("fd00:22::1"), true}}
	for i := range p.Networks {
		n := &p.Networks[i]
		s := six[n.Name]
		n.Subnet6, n.Gateway6, n.Masquerade6 = netip.MustParsePrefix(s.subnet), s.gw, s.masq
	}
	ip6 := map[string]netip.Addr{"web": web6, "web2": web26, "db": db6, "vault": vault6}
	for i := range p.Endpoints {
		ifc := &p.Endpoints[i].Interfaces[0]
		ifc.IP6, ifc.Gateway6 = ip6[p.Endpoints[i].Name], six[ifc.Network].gw
		ifc.Prefix6 = netip.PrefixFrom(ifc.IP6, 64)
	}
}

// newRig6 is a rig over the dual-stack plan.
func newRig6(t testing.TB, edit ...func(*config.Plan)) *rig {
	return newRig(t, append([]func(*config.Plan){dual}, edit...)...)
}

// addr6 is the router's IPv6 address on iface.
func (g *rig) addr6(iface string) [16]byte {
	if iface == UplinkName {
		return g.plan.Uplink.Address6.Addr().As16()
	}
	return g.plan.Network(iface).Gateway6.As16()
}

// --- IPv6 packets, built with gopacket --------------------------------------

func ip6Layer(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// icmp6Error is the ICMPv6 error from src to dst quoting the whole of
// quoted; rest is the second word (the MTU of a packet too big).
func icmp6Error(t testing.TB, src, dst netip.Addr, typ, code uint8, rest uint32, quoted []byte) []byte {
	ip := ip6Layer(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = icmp.SetNetworkLayerForChecksum(ip)
	word := []byte{byte(rest >> 24), byte(rest >> 16), byte(rest >> 8), byte(rest)}
	return serialize(t, ip, icmp, gopacket.Payload(append(word, quoted...)))
}

// --- decoding and checksum verification, independent of package packet ----

type decoded6 struct {
	ip   *layers.IPv6
	tcp  *layers.TCP
	udp  *layers.UDP
	icmp *layers.ICMPv6
	id   uint16 // an echo's identifier
}

func decodeIP6(t testing.TB, b []byte) decoded6 {
	t.Helper()
	var (
		ip   layers.IPv6
		tcp  layers.TCP
		udp  layers.UDP
		icmp layers.ICMPv6
		echo layers.ICMPv6Echo
		pl   gopacket.Payload
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, &ip, &tcp, &udp, &icmp, &echo, &pl)
	p.IgnoreUnsupported = true
	var got []gopacket.LayerType
	require.NoError(t, p.DecodeLayers(b, &got), "decodes")
	d := decoded6{ip: &ip}
	for _, l := range got {
		switch l {
		case layers.LayerTypeTCP:
			d.tcp = &tcp
		case layers.LayerTypeUDP:
			d.udp = &udp
		case layers.LayerTypeICMPv6:
			d.icmp = &icmp
		case layers.LayerTypeICMPv6Echo:
			d.id = echo.Identifier
		}
	}
	return d
}

func (d decoded6) ends() (src, dst netip.AddrPort) {
	s, _ := netip.AddrFromSlice(d.ip.SrcIP)
	a, _ := netip.AddrFromSlice(d.ip.DstIP)
	switch {
	case d.tcp != nil:
		return ap(s, uint16(d.tcp.SrcPort)), ap(a, uint16(d.tcp.DstPort))
	case d.udp != nil:
		return ap(s, uint16(d.udp.SrcPort)), ap(a, uint16(d.udp.DstPort))
	}
	return ap(s, d.id), ap(a, d.id)
}

// requireChecksums6 has gopacket recompute the transport checksum of an
// IPv6 packet (over its pseudo header) and, for an ICMPv6 error quoting a
// whole packet, the quoted packet's too.
func requireChecksums6(t testing.TB, b []byte) {
	t.Helper()
	d := decodeIP6(t, b)
	var (
		l interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}
		have uint16
		body []gopacket.SerializableLayer
		want func() uint16
	)
	switch {
	case d.tcp != nil:
		c := *d.tcp
		l, have, body, want = &c, d.tcp.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(d.tcp.Payload)}, func() uint16 { return c.Checksum }
	case d.udp != nil:
		c := *d.udp
		l, have, body, want = &c, d.udp.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(d.udp.Payload)}, func() uint16 { return c.Checksum }
	case d.icmp != nil:
		c := *d.icmp
		l, have, body, want = &c, d.icmp.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(d.icmp.Payload)}, func() uint16 { return c.Checksum }
	default:
		return
	}
	require.NoError(t, l.SetNetworkLayerForChecksum(d.ip))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, body...))
	w := want()
	if d.udp != nil && w == 0 {
		w = 0xffff
	}
	require.Equal(t, w, have, "transport checksum")
	if d.icmp != nil && d.icmp.TypeCode.Type() < 128 && len(d.icmp.Payload) >= 4+40 {
		requireChecksums6(t, d.icmp.Payload[4:])
	}
}
