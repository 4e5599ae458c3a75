package packet

import (
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

var (
	tSrc = [4]byte{10, 0, 0, 1}
	tDst = [4]byte{192, 168, 7, 9}
)

// tcpSegment is an IPv4 packet holding a TCP segment with an MSS option,
// built by gopacket.
func tcpSegment(t testing.TB, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: tSrc[:], DstIP: tDst[:]}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 0xdeadbeef, Ack: 0x01020304, SYN: true, ACK: true, ECE: true,
		Window: 29200, Urgent: 7, Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		}}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)))
	return buf.Bytes()
}

func TestUDPView(t *testing.T) {
	ip := IPv4(udpFrame(t)[EthernetHeaderLen:])
	u := UDP(ip.Payload())
	require.True(t, u.Valid())
	require.EqualValues(t, 1234, u.SrcPort())
	require.EqualValues(t, 53, u.DstPort())
	require.EqualValues(t, 13, u.Length())
	require.Equal(t, []byte("abcde"), u.Payload())
	require.NotZero(t, u.Checksum())
	require.False(t, UDP(u[:7]).Valid())
	short := append(UDP(nil), u...)
	short.SetLength(14) // longer than the slice
	require.False(t, short.Valid())
	short.SetLength(7) // shorter than the header
	require.False(t, short.Valid())

	// Encode and ComputeChecksum agree with what gopacket built.
	b := make(UDP, len(u))
	b.Encode(&UDPFields{SrcPort: 1234, DstPort: 53, Length: 13})
	copy(b[UDPHeaderLen:], "abcde")
	b.ComputeChecksum(ip.Src(), ip.Dst())
	require.Equal(t, []byte(u), []byte(b))
}

func TestTCPView(t *testing.T) {
	ip := IPv4(tcpSegment(t, []byte("hello")))
	require.True(t, ip.Valid())
	s := TCP(ip.Payload())
	require.True(t, s.Valid())
	require.EqualValues(t, 40000, s.SrcPort())
	require.EqualValues(t, 443, s.DstPort())
	require.EqualValues(t, 0xdeadbeef, s.Seq())
	require.EqualValues(t, 0x01020304, s.Ack())
	require.Equal(t, 24, s.HeaderLen())
	require.EqualValues(t, TCPSyn|TCPAck|TCPEce, s.Flags())
	require.EqualValues(t, 29200, s.Window())
	require.EqualValues(t, 7, s.Urgent())
	require.Equal(t, []byte("hello"), s.Payload())
	require.Zero(t, Checksum(s, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint16(len(s)))))
	mss, ok := s.MSS()
	require.True(t, ok)
	require.EqualValues(t, 1460, mss)

	// Encode and ComputeChecksum agree with what gopacket built.
	b := make(TCP, len(s))
	b.Encode(&TCPFields{SrcPort: 40000, DstPort: 443, Seq: 0xdeadbeef, Ack: 0x01020304, DataOffset: 24,
		Flags: TCPSyn | TCPAck | TCPEce, Window: 29200, Urgent: 7})
	copy(b[TCPMinHeaderLen:], s.Options())
	copy(b[24:], "hello")
	b.ComputeChecksum(ip.Src(), ip.Dst())
	require.Equal(t, []byte(s), []byte(b))

	// Malformed options say no MSS; a data offset past the end is invalid.
	bad := append(TCP(nil), s...)
	bad[21] = 40
	_, ok = bad.MSS()
	require.False(t, ok)
	bad[12] = 0xf0
	require.False(t, bad.Valid())
	require.False(t, TCP(s[:19]).Valid())
}

// Every incremental setter leaves a checksum that verifies, for random
// ports and addresses, as recomputing it from scratch would.
func TestTransportChecksumUpdates(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	addr := func() [4]byte { return [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())} }
	payload := make([]byte, 37)
	for range 5000 {
		for i := range payload {
			payload[i] = byte(r.Uint32())
		}
		ip := IPv4(tcpSegment(t, payload))
		verifyTCP := func() {
			s := TCP(ip.Payload())
			require.True(t, ip.HeaderChecksumValid())
			require.Zero(t, Checksum(s, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint16(len(s)))))
		}
		s := TCP(ip.Payload())
		s.SetSrcPortWithChecksumUpdate(uint16(r.Uint32()))
		s.SetDstPortWithChecksumUpdate(uint16(r.Uint32()))
		verifyTCP()
		old, nw := ip.Src(), addr()
		ip.SetSrcWithChecksumUpdate(nw)
		s.UpdateChecksumPseudoHeaderAddress(old, nw, true)
		verifyTCP()
		old, nw = ip.Dst(), addr()
		ip.SetDstWithChecksumUpdate(nw)
		s.UpdateChecksumPseudoHeaderAddress(old, nw, true)
		verifyTCP()

		u := make(UDP, UDPHeaderLen+len(payload))
		u.Encode(&UDPFields{SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Length: uint16(len(u))})
		copy(u[UDPHeaderLen:], payload)
		src, dst := addr(), addr()
		u.ComputeChecksum(src, dst)
		u.SetSrcPortWithChecksumUpdate(uint16(r.Uint32()))
		u.SetDstPortWithChecksumUpdate(uint16(r.Uint32()))
		nsrc := addr()
		u.UpdateChecksumPseudoHeaderAddress(src, nsrc, true)
		require.NotZero(t, u.Checksum(), "0 would say the datagram has no checksum")
		require.Zero(t, Checksum(u, PseudoHeaderSum(nsrc, dst, ProtoUDP, uint16(len(u)))))
	}
}

// A UDP datagram without a checksum keeps none; a partial checksum (the
// pseudo header's sum, not complemented) follows the address but not the
// port.
func TestUDPChecksumNoneAndPartial(t *testing.T) {
	u := make(UDP, 12)
	u.Encode(&UDPFields{SrcPort: 1, DstPort: 2, Length: 12})
	u.SetSrcPortWithChecksumUpdate(99)
	u.UpdateChecksumPseudoHeaderAddress(tSrc, tDst, true)
	require.Zero(t, u.Checksum())
	require.EqualValues(t, 99, u.SrcPort())

	partial := func(src [4]byte) uint16 { return Sum(nil, PseudoHeaderSum(src, tDst, ProtoUDP, 12)) }
	u.SetChecksum(partial(tSrc))
	n := [4]byte{172, 16, 0, 1}
	u.UpdateChecksumPseudoHeaderAddress(tSrc, n, false)
	require.Equal(t, partial(n), u.Checksum())

	s := make(TCP, 20)
	s.SetChecksum(Sum(nil, PseudoHeaderSum(tSrc, tDst, ProtoTCP, 20)))
	s.UpdateChecksumPseudoHeaderAddress(tSrc, n, false)
	require.Equal(t, Sum(nil, PseudoHeaderSum(n, tDst, ProtoTCP, 20)), s.Checksum())
}

func TestICMPSetters(t *testing.T) {
	m := make(ICMP, 16)
	m.Encode(&ICMPFields{Type: ICMPEchoRequest, Rest: 0x1234_0001})
	copy(m[8:], "pingping")
	m.SetChecksum()
	m.SetTypeWithChecksumUpdate(ICMPEchoReply)
	m.SetIDWithChecksumUpdate(0x4321)
	require.Zero(t, Checksum(m, 0))
	require.EqualValues(t, ICMPEchoReply, m.Type())
	require.EqualValues(t, 0x4321, m.ID())
}

func TestIPv6AndTagViews(t *testing.T) {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, gopacket.Payload("abc")))
	v := IPv6(buf.Bytes())
	require.True(t, v.Valid())
	require.EqualValues(t, ProtoUDP, v.NextHeader())
	require.Equal(t, []byte(append(net.ParseIP("fd00::1").To16(), net.ParseIP("fd00::2").To16()...)), v.Addrs())
	v.SetPayloadLen(9)
	require.EqualValues(t, 9, gopacket.NewPacket(v, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeIPv6).(*layers.IPv6).Length)
	require.False(t, IPv6(v[:39]).Valid())

	f := make(Ethernet, 18)
	f.SetTag(EtherTypeVLAN, 0x2005)
	copy(f[16:], []byte{0x08, 0x00})
	vid, ok := f.VLAN()
	require.True(t, ok)
	require.EqualValues(t, 5, vid)
	require.EqualValues(t, EtherTypeIPv4, f.TaggedEtherType())
}

func TestAddrPair(t *testing.T) {
	ip := IPv4(udpFrame(t)[EthernetHeaderLen:])
	require.Equal(t, PairOf(ip.Src(), ip.Dst()), ip.AddrPair())
	require.EqualValues(t, 0x0a000001, AddrBits(ip.Src()))
}

// checkTransport reads every transport view over an IPv4 packet at the
// start of b, and checks that the incremental setters keep a valid
// checksum valid.
func checkTransport(t *testing.T, b []byte) {
	ip := IPv4(b)
	if !ip.Valid() || ip.IsFragment() {
		return
	}
	ip = ip[:ip.TotalLen()]
	l4 := ip.Payload()
	n := [4]byte{100, 64, 0, 1}
	switch ip.Protocol() {
	case ProtoTCP:
		s := TCP(l4)
		if !s.Valid() {
			return
		}
		_, _ = s.MSS()
		_, _, _ = s.Window(), s.Urgent(), s.Payload()
		valid := Checksum(s, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint16(len(s)))) == 0
		old := ip.Src()
		ip.SetSrcWithChecksumUpdate(n)
		s.UpdateChecksumPseudoHeaderAddress(old, n, true)
		s.SetDstPortWithChecksumUpdate(s.DstPort() ^ 0x5a5a)
		if valid && Checksum(s, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint16(len(s)))) != 0 {
			t.Fatalf("TCP checksum no longer verifies after incremental updates: % x", []byte(ip))
		}
	case ProtoUDP:
		u := UDP(l4)
		if !u.Valid() || int(u.Length()) != len(u) {
			return
		}
		_ = u.Payload()
		had := u.Checksum()
		valid := had != 0 && Checksum(u, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoUDP, uint16(len(u)))) == 0
		old := ip.Dst()
		ip.SetDstWithChecksumUpdate(n)
		u.UpdateChecksumPseudoHeaderAddress(old, n, true)
		u.SetSrcPortWithChecksumUpdate(u.SrcPort() + 1)
		if had == 0 && u.Checksum() != 0 {
			t.Fatalf("a UDP datagram without a checksum got one: % x", []byte(ip))
		}
		if valid && (u.Checksum() == 0 || Checksum(u, PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoUDP, uint16(len(u)))) != 0) {
			t.Fatalf("UDP checksum no longer verifies after incremental updates: % x", []byte(ip))
		}
	case ProtoICMP:
		m := ICMP(l4)
		if !m.Valid() {
			return
		}
		valid := Checksum(m, 0) == 0
		m.SetIDWithChecksumUpdate(m.ID() + 1)
		if valid && Checksum(m, 0) != 0 {
			t.Fatalf("ICMP checksum no longer verifies after the id changed: % x", []byte(ip))
		}
	}
}

// FuzzTransport reads IPv4 packets through the transport views and
// updates their fields incrementally: no panic, and a checksum that
// verified still verifies.
func FuzzTransport(f *testing.F) {
	f.Add(tcpSegment(f, []byte("hello")))
	f.Add(udpFrame(f)[EthernetHeaderLen:])
	f.Fuzz(func(t *testing.T, b []byte) {
		checkTransport(t, b)
	})
}
