package packet

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

var (
	a6 = netip.MustParseAddr("fd00:20::5").As16()
	b6 = netip.MustParseAddr("fd00:21::7").As16()
)

// echo6Frame builds an Ethernet/IPv6 echo request with gopacket, with the
// extension headers exts before it (nil: none).
func echo6Frame(t testing.TB, hop uint8, withHopByHop bool) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: a6[:], DstIP: b6[:]}
	ls := []gopacket.SerializableLayer{eth, ip}
	if withHopByHop {
		ip.NextHeader = layers.IPProtocolIPv6HopByHop
		hbh := &layers.IPv6HopByHop{}
		hbh.NextHeader = layers.IPProtocolICMPv6
		hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
		ls = append(ls, hbh)
	}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	_ = m.SetNetworkLayerForChecksum(ip)
	ls = append(ls, m, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}, gopacket.Payload("hello"))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return buf.Bytes()
}

func TestIPv6View(t *testing.T) {
	f := echo6Frame(t, 9, false)
	ip := IPv6(f[EthernetHeaderLen:])
	require.True(t, ip.LenValid())
	require.Equal(t, a6, ip.Src())
	require.Equal(t, b6, ip.Dst())
	hi, lo := ip.SrcWords()
	require.Equal(t, [2]uint64{0xfd00_0020_0000_0000, 5}, [2]uint64{hi, lo}) // fd00:20::5
	hi, lo = ip.DstWords()
	require.Equal(t, [2]uint64{0xfd00_0021_0000_0000, 7}, [2]uint64{hi, lo}) // fd00:21::7
	require.EqualValues(t, 9, ip.HopLimit())
	require.EqualValues(t, len(ip)-IPv6HeaderLen, ip.PayloadLen())
	proto, off, ok := ip.Upper()
	require.True(t, ok)
	require.EqualValues(t, ProtoICMPv6, proto)
	require.Equal(t, IPv6HeaderLen, off)
	m := ICMPv6(ip[off:])
	require.EqualValues(t, ICMPv6EchoRequest, m.Type())
	require.EqualValues(t, 7, m.ID())
	require.True(t, m.ChecksumValid(ip.Src(), ip.Dst()))
	require.False(t, m.IsError())
	require.False(t, ip.IsFragment())

	// Through a hop-by-hop header.
	f = echo6Frame(t, 9, true)
	ip = IPv6(f[EthernetHeaderLen:])
	proto, off, ok = ip.Upper()
	require.True(t, ok)
	require.EqualValues(t, ProtoICMPv6, proto)
	require.Equal(t, IPv6HeaderLen+8, off)
	require.True(t, ICMPv6(ip[off:]).ChecksumValid(ip.Src(), ip.Dst()))

	// A truncated extension header does not parse.
	ip.SetPayloadLen(1)
	_, _, ok = ip[:IPv6HeaderLen+1].Upper()
	require.False(t, ok)
}

// The RFC 1624 setters give what a computation from scratch gives, as
// gopacket checks it.
func TestICMPv6Setters(t *testing.T) {
	f := echo6Frame(t, 64, false)
	ip := IPv6(f[EthernetHeaderLen:])
	m := ICMPv6(ip.Payload())
	m.SetTypeWithChecksumUpdate(ICMPv6EchoReply)
	m.SetIDWithChecksumUpdate(4242)
	n := netip.MustParseAddr("2001:db8::1").As16()
	m.UpdateChecksumPseudoHeaderAddress(ip.Src(), n)
	ip.SetSrc(n)
	require.True(t, m.ChecksumValid(ip.Src(), ip.Dst()))
	got := m.Checksum()
	m.SetChecksum(ip.Src(), ip.Dst())
	require.Equal(t, m.Checksum(), got)
	verifyICMPv6(t, f)
}

// verifyICMPv6 has gopacket recompute the ICMPv6 checksum of frame and
// compares it with the one the frame carries.
func verifyICMPv6(t *testing.T, frame []byte) *layers.ICMPv6 {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer())
	m := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	c := *m
	require.NoError(t, c.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(m.Payload)))
	require.Equal(t, m.Checksum, c.Checksum, "ICMPv6 checksum")
	return m
}

func TestPutNSAndNA(t *testing.T) {
	mac := MAC{2, 0x42, 1, 2, 3, 4}
	ll := mac.LinkLocal6()
	b := make([]byte, NDPFrameLen)
	f := PutNS(b, MulticastMAC6(SolicitedNode(a6)), mac, ll, SolicitedNode(a6), a6)
	m := verifyICMPv6(t, f)
	require.EqualValues(t, layers.ICMPv6TypeNeighborSolicitation, m.TypeCode.Type())
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ns := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	require.Equal(t, net.IP(a6[:]).String(), ns.TargetAddress.String())
	require.Len(t, ns.Options, 1)
	require.EqualValues(t, layers.ICMPv6OptSourceAddress, ns.Options[0].Type)
	require.Equal(t, mac[:], ns.Options[0].Data)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.EqualValues(t, 255, ip.HopLimit)
	require.Equal(t, "ff02::1:ff00:5", ip.DstIP.String())
	require.Equal(t, "33:33:ff:00:00:05", p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC.String())

	nd := NDP(IPv6(f[EthernetHeaderLen:]).Payload())
	require.True(t, nd.Valid())
	require.Equal(t, a6, nd.Target())
	got, found, ok := nd.LinkAddr(NDPOptSourceLink)
	require.True(t, ok)
	require.True(t, found)
	require.Equal(t, mac, got)
	_, found, ok = nd.LinkAddr(NDPOptTargetLink)
	require.True(t, ok)
	require.False(t, found)

	f = PutNA(b, NAFlagRouter|NAFlagSolicited|NAFlagOverride, MAC{2, 0, 0, 0, 0, 9}, mac, ll, b6, ll)
	m = verifyICMPv6(t, f)
	require.EqualValues(t, layers.ICMPv6TypeNeighborAdvertisement, m.TypeCode.Type())
	p = gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	require.True(t, na.Router())
	require.True(t, na.Solicited())
	require.True(t, na.Override())
	require.Equal(t, net.IP(ll[:]).String(), na.TargetAddress.String())
	require.EqualValues(t, layers.ICMPv6OptTargetAddress, na.Options[0].Type)
	require.Equal(t, mac[:], na.Options[0].Data)

	// Options that do not parse are refused.
	nd = NDP(IPv6(f[EthernetHeaderLen:]).Payload())
	nd[NDPLen+1] = 0
	_, _, ok = nd.LinkAddr(NDPOptTargetLink)
	require.False(t, ok)
}

func TestPseudoHeaderSum6(t *testing.T) {
	// The sum over the explicit pseudo header, bytes as RFC 8200 8.1 lays
	// them out, for a length above 64 KiB too.
	for _, n := range []uint32{8, 1500, 70000} {
		ph := make([]byte, 40)
		copy(ph, a6[:])
		copy(ph[16:], b6[:])
		ph[32], ph[33], ph[34], ph[35] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		ph[39] = ProtoICMPv6
		require.Equal(t, Sum(ph, 0), fold(PseudoHeaderSum6(a6, b6, ProtoICMPv6, n)))
	}
}

func TestIPv6ViewsDoNotAllocate(t *testing.T) {
	f := echo6Frame(t, 64, true)
	b := make([]byte, NDPFrameLen)
	mac := MAC{2, 0x42, 1, 2, 3, 4}
	allocs := testing.AllocsPerRun(100, func() {
		ip := IPv6(f[EthernetHeaderLen:])
		_, off, _ := ip.Upper()
		m := ICMPv6(ip[off:])
		_ = m.ChecksumValid(ip.Src(), ip.Dst())
		ip.SetHopLimit(ip.HopLimit() - 1)
		m.SetTypeWithChecksumUpdate(ICMPv6EchoRequest)
		m.UpdateChecksumPseudoHeaderAddress(ip.Src(), ip.Src())
		g := PutNA(b, NAFlagSolicited, mac, mac, a6, b6, a6)
		_, _, _ = NDP(g[EthernetHeaderLen+IPv6HeaderLen:]).LinkAddr(NDPOptTargetLink)
	})
	require.Zero(t, allocs)
}

func FuzzIPv6(f *testing.F) {
	f.Add(echo6Frame(f, 64, false)[EthernetHeaderLen:])
	f.Add(echo6Frame(f, 64, true)[EthernetHeaderLen:])
	f.Add(PutNS(make([]byte, NDPFrameLen), MAC{}, MAC{2}, a6, b6, a6)[EthernetHeaderLen:])
	f.Fuzz(func(t *testing.T, b []byte) {
		ip := IPv6(b)
		if !ip.LenValid() {
			return
		}
		_ = ip.IsFragment()
		proto, off, ok := ip.Upper()
		if !ok {
			return
		}
		if off > len(ip) {
			t.Fatalf("upper-layer offset %d beyond %d bytes", off, len(ip))
		}
		if proto != ProtoICMPv6 {
			return
		}
		m := ICMPv6(ip[off : IPv6HeaderLen+int(ip.PayloadLen())])
		if !m.Valid() {
			return
		}
		_ = m.ChecksumValid(ip.Src(), ip.Dst())
		if nd := NDP(m); nd.Valid() {
			_ = nd.Target()
			_, _, _ = nd.LinkAddr(NDPOptSourceLink)
		}
	})
}
