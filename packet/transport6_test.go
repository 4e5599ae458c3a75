package packet

import (
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

var (
	t6Src = [16]byte{0xfd, 0, 0, 0x20, 15: 0x0a}
	t6Dst = [16]byte{0x20, 0x01, 0x0d, 0xb8, 8: 0xff, 15: 0x09}
	t6New = [16]byte{0xfd, 0, 0, 0xfa, 7: 0x77, 14: 0xff, 15: 0xfe}
)

// ipv6Packet is an IPv6 packet with a hop-by-hop header, then l4 (a TCP,
// UDP or ICMPv6 layer, an echo's body following ICMPv6) and a payload,
// built by gopacket.
func ipv6Packet(t testing.TB, l4 ...gopacket.SerializableLayer) IPv6 {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: t6Src[:], DstIP: t6Dst[:]}
	ip.HopByHop = &layers.IPv6HopByHop{}
	ip.HopByHop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	switch l := l4[0].(type) {
	case *layers.TCP:
		ip.HopByHop.NextHeader = layers.IPProtocolTCP
		_ = l.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		ip.HopByHop.NextHeader = layers.IPProtocolUDP
		_ = l.SetNetworkLayerForChecksum(ip)
	case *layers.ICMPv6:
		ip.HopByHop.NextHeader = layers.IPProtocolICMPv6
		_ = l.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		append([]gopacket.SerializableLayer{ip}, append(l4, gopacket.Payload("payload!x"))...)...))
	return IPv6(append([]byte(nil), buf.Bytes()...))
}

func v6Packets(t testing.TB) map[string]IPv6 {
	return map[string]IPv6{
		"tcp": ipv6Packet(t, &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 7, SYN: true, Window: 100}),
		"udp": ipv6Packet(t, &layers.UDP{SrcPort: 40001, DstPort: 4000}),
		"icmpv6": ipv6Packet(t, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)},
			&layers.ICMPv6Echo{Identifier: 0x4242, SeqNumber: 1}),
	}
}

// requireSum6 has gopacket recompute the transport checksum of an IPv6
// packet and compares it with the one it holds.
func requireSum6(t testing.TB, b []byte) {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv6, gopacket.Default)
	require.Nil(t, pkt.ErrorLayer())
	ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	var (
		l interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}
		got  uint16
		body []gopacket.SerializableLayer
	)
	switch {
	case pkt.Layer(layers.LayerTypeTCP) != nil:
		c := *pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		l, got, body = &c, c.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(c.Payload)}
	case pkt.Layer(layers.LayerTypeUDP) != nil:
		c := *pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		l, got, body = &c, c.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(c.Payload)}
	default:
		c := *pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		l, got, body = &c, c.Checksum, []gopacket.SerializableLayer{&c, gopacket.Payload(c.Payload)}
	}
	require.NoError(t, l.SetNetworkLayerForChecksum(ip))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, body...))
	var want uint16
	switch c := l.(type) {
	case *layers.TCP:
		want = c.Checksum
	case *layers.UDP:
		want = c.Checksum
	case *layers.ICMPv6:
		want = c.Checksum
	}
	require.Equal(t, want, got, "transport checksum")
}

// setAddr6 sets ip's source (or destination) address to a and updates the
// transport checksum, as NAT does.
func setAddr6(ip IPv6, dst bool, a [16]byte) {
	old := ip.Src()
	if dst {
		old = ip.Dst()
		ip.SetDst(a)
	} else {
		ip.SetSrc(a)
	}
	proto, off, _ := ip.Upper()
	switch proto {
	case ProtoTCP:
		TCP(ip[off:]).UpdateChecksumPseudoHeaderAddress6(old, a, true)
	case ProtoUDP:
		UDP(ip[off:]).UpdateChecksumPseudoHeaderAddress6(old, a, true)
	case ProtoICMPv6:
		ICMPv6(ip[off:]).UpdateChecksumPseudoHeaderAddress(old, a)
	}
}

func TestIPv6AddressChecksumUpdate(t *testing.T) {
	for name, ip := range v6Packets(t) {
		t.Run(name, func(t *testing.T) {
			setAddr6(ip, false, t6New)
			require.Equal(t, t6New, ip.Src())
			requireSum6(t, ip)
			setAddr6(ip, true, t6Src)
			require.Equal(t, t6Src, ip.Dst())
			requireSum6(t, ip)
			_, off, _ := ip.Upper()
			if name == "icmpv6" {
				m := ICMPv6(ip[off:])
				require.False(t, m.IsError())
				m.SetIDWithChecksumUpdate(0x9999)
				require.EqualValues(t, 0x9999, m.ID())
				requireSum6(t, ip)
				m.SetChecksum(ip.Src(), ip.Dst())
				requireSum6(t, ip)
			}
		})
	}
}

// A partial checksum (an offloaded frame's: the pseudo header's sum, not
// complemented) follows an address change as the pseudo header does.
func TestIPv6PartialChecksumUpdate(t *testing.T) {
	ip := v6Packets(t)["tcp"]
	_, off, _ := ip.Upper()
	seg := TCP(ip[off:])
	partial := func() uint16 {
		return fold(PseudoHeaderSum6(ip.Src(), ip.Dst(), ProtoTCP, uint32(len(seg))))
	}
	seg.SetChecksum(partial())
	old := ip.Src()
	ip.SetSrc(t6New)
	seg.UpdateChecksumPseudoHeaderAddress6(old, t6New, false)
	require.Equal(t, partial(), seg.Checksum())

	u := UDP(v6Packets(t)["udp"][off:])
	u.SetChecksum(0)
	u.UpdateChecksumPseudoHeaderAddress6(t6Src, t6New, true)
	require.Zero(t, u.Checksum(), "no checksum stays none")
}

func TestComputeChecksum6(t *testing.T) {
	for name, ip := range v6Packets(t) {
		want := append(IPv6(nil), ip...)
		_, off, _ := ip.Upper()
		switch name {
		case "tcp":
			TCP(ip[off:]).ComputeChecksum6(ip.Src(), ip.Dst())
		case "udp":
			UDP(ip[off:]).ComputeChecksum6(ip.Src(), ip.Dst())
		case "icmpv6":
			ICMPv6(ip[off:]).SetChecksum(ip.Src(), ip.Dst())
		}
		require.Equal(t, want, ip, name)
	}
}

func TestIPv6NATSettersAllocateNothing(t *testing.T) {
	ip := v6Packets(t)["tcp"]
	_, off, _ := ip.Upper()
	seg := TCP(ip[off:])
	a, b := t6Src, t6New
	allocs := testing.AllocsPerRun(100, func() {
		old := ip.Src()
		ip.SetSrc(b)
		seg.UpdateChecksumPseudoHeaderAddress6(old, b, true)
		a, b = b, a
		_, _, _ = ip.Upper()
	})
	require.Zero(t, allocs)
}

// ChecksumUpdate128 agrees with RFC 1624 eqn. 3 computed word by word,
// for random and extreme checksums and addresses.
func TestChecksumUpdate128Reference(t *testing.T) {
	ref := func(c uint16, old, new [16]byte) uint16 {
		s := uint32(^c)
		for i := 0; i < 16; i += 2 {
			s += uint32(^(uint16(old[i])<<8 | uint16(old[i+1]))) + uint32(uint16(new[i])<<8|uint16(new[i+1]))
		}
		return ^fold(s)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ones [16]byte
	for i := range ones {
		ones[i] = 0xff
	}
	addrs := [][16]byte{{}, ones, t6Src, t6Dst, t6New}
	for range 2000 {
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		addrs = append(addrs, a)
	}
	for i, old := range addrs {
		new := addrs[(i*7+1)%len(addrs)]
		for _, c := range []uint16{0, 1, 0xfffe, 0xffff, uint16(rng.Uint32())} {
			require.Equal(t, ref(c, old, new), ChecksumUpdate128(c, old, new), "checksum %#04x, %x -> %x", c, old, new)
		}
	}
}
