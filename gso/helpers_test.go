package gso

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// spec describes a super-frame for build.
type spec struct {
	v6      bool
	vlan    layers.EthernetType // 0, or the tag's type: Dot1Q or QinQ
	udp     bool
	payload int    // bytes, filled with pattern
	mss     uint16 // GSOSize; 1448 when 0
	ipOpts  bool   // an IPv4 router alert option
	tsOpt   bool   // TCP NOP, NOP, timestamps
	fin     bool
	psh     bool
	cwr     bool
	seq     uint32
	id      uint16
}

var (
	srcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	dstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	src4   = net.IP{172, 20, 0, 10}
	dst4   = net.IP{198, 51, 100, 7}
	src6   = net.ParseIP("fd00:20::10")
	dst6   = net.ParseIP("2001:db8:100::7")
)

// pattern is the payload byte at offset i of a super-frame: not periodic
// at any segment size the tests use, so a misplaced chunk shows.
func pattern(i int) byte { return byte(i) ^ byte(i>>8)*31 ^ byte(i>>16)*7 }

func patternBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern(i)
	}
	return b
}

// build returns the super-frame s describes, its transport checksum left
// partial as Linux leaves it (the folded pseudo-header sum, over the full
// transport length, not complemented), and its offload header.
func build(t testing.TB, s spec) ([]byte, packet.Offload) {
	t.Helper()
	f, o := buildFull(t, s)
	partial := ^packet.Checksum(nil, pseudo(f, int(o.CsumStart), len(f)-int(o.CsumStart)))
	binary.BigEndian.PutUint16(f[o.CsumStart+o.CsumOffset:], partial)
	return f, o
}

// buildFull is build with every checksum computed by gopacket.
func buildFull(t testing.TB, s spec) ([]byte, packet.Offload) {
	t.Helper()
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	if s.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	ls = append(ls, eth)
	l4 := packet.EthernetHeaderLen
	if s.vlan != 0 {
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 42, Priority: 3, Type: eth.EthernetType})
		eth.EthernetType = s.vlan
		l4 += packet.VLANTagLen
	}
	proto := layers.IPProtocolTCP
	if s.udp {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	if s.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: 0x10, FlowLabel: 0x12345, NextHeader: proto, HopLimit: 64, SrcIP: src6, DstIP: dst6}
		ls, nl = append(ls, ip), ip
		l4 += 40
	} else {
		ip := &layers.IPv4{Version: 4, TOS: 0x10, TTL: 64, Id: s.id, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: src4, DstIP: dst4}
		l4 += 20
		if s.ipOpts {
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
			l4 += 4
		}
		ls, nl = append(ls, ip), ip
	}
	var o packet.Offload
	o.Flags = packet.VnetNeedsCsum
	o.CsumStart = uint16(l4)
	o.GSOSize = s.mss
	if o.GSOSize == 0 {
		o.GSOSize = 1448
	}
	if s.udp {
		udp := &layers.UDP{SrcPort: 40001, DstPort: 9000}
		_ = udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
		o.GSOType, o.CsumOffset, o.HdrLen = packet.GSOUDPL4, packet.UDPChecksumOffset, uint16(l4+8)
	} else {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: s.seq, Ack: 77, ACK: true, Window: 502,
			FIN: s.fin, PSH: s.psh, CWR: s.cwr, ECE: s.cwr}
		hl := 20
		if s.tsOpt {
			tcp.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 1, 2, 3, 4, 5, 6, 7}},
			}
			hl += 12
		}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
		o.GSOType, o.CsumOffset, o.HdrLen = packet.GSOTCPv4, packet.TCPChecksumOffset, uint16(l4+hl)
		if s.v6 {
			o.GSOType = packet.GSOTCPv6
		}
	}
	ls = append(ls, gopacket.Payload(patternBytes(s.payload)))
	f := serialize(t, ls...)
	require.Equal(t, int(o.HdrLen)+s.payload, len(f), "frame length")
	return f, o
}

func serialize(t testing.TB, l ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l...))
	return append([]byte(nil), buf.Bytes()...)
}

// netOffset is the IP header's offset in an Ethernet frame with at most
// one tag.
func netOffset(f []byte) int {
	if et := binary.BigEndian.Uint16(f[12:]); et == 0x8100 || et == 0x88a8 {
		return 18
	}
	return 14
}

// pseudo is the reference pseudo-header sum, written out from RFC 793 and
// RFC 8200 rather than with what gso uses: the source and destination
// addresses, the protocol and the transport length.
func pseudo(f []byte, l4, length int) uint32 {
	l3 := netOffset(f)
	var addrs []byte
	var proto byte
	if f[l3]>>4 == 4 {
		addrs, proto = f[l3+12:l3+20], f[l3+9]
	} else {
		addrs, proto = f[l3+8:l3+40], f[l3+6]
	}
	var s uint32
	for i := 0; i < len(addrs); i += 2 {
		s += uint32(addrs[i])<<8 | uint32(addrs[i+1])
	}
	return s + uint32(proto) + uint32(length)
}

// wire checks what a wire frame must satisfy by reference arithmetic
// (packet.Checksum over the IPv4 header, and over the transport segment
// with the pseudo header): the IP lengths match the frame, the IPv4 header
// checksum and the transport checksum verify, a UDP length matches and a
// UDP checksum is not 0. It returns the transport header offset and the
// payload.
func wire(t testing.TB, f []byte) (l4 int, payload []byte) {
	t.Helper()
	l3 := netOffset(f)
	var proto byte
	if f[l3]>>4 == 4 {
		ip := packet.IPv4(f[l3:])
		require.True(t, ip.Valid(), "IPv4 header")
		require.Equal(t, len(f)-l3, int(ip.TotalLen()), "IPv4 total length")
		require.Equal(t, uint16(0), packet.Checksum(f[l3:l3+ip.HeaderLen()], 0), "IPv4 header checksum")
		l4, proto = l3+ip.HeaderLen(), ip.Protocol()
	} else {
		require.Equal(t, len(f)-l3-40, int(binary.BigEndian.Uint16(f[l3+4:])), "IPv6 payload length")
		l4, proto = l3+40, f[l3+6]
	}
	require.Equal(t, uint16(0), packet.Checksum(f[l4:], pseudo(f, l4, len(f)-l4)), "transport checksum")
	if proto == packet.ProtoUDP {
		require.Equal(t, len(f)-l4, int(binary.BigEndian.Uint16(f[l4+4:])), "UDP length")
		require.NotEqual(t, uint16(0), binary.BigEndian.Uint16(f[l4+6:]), "UDP checksum 0 means none")
		return l4, f[l4+8:]
	}
	return l4, f[l4+packet.TCP(f[l4:]).HeaderLen():]
}

// decoded is a wire frame decoded by gopacket.
type decoded struct {
	ip4     *layers.IPv4
	ip6     *layers.IPv6
	tcp     *layers.TCP
	udp     *layers.UDP
	payload []byte
}

// decode decodes f with gopacket, which must find no error, and checks
// that gopacket serializing the same layers with FixLengths and
// ComputeChecksums gives back f byte for byte: every length and checksum
// is what gopacket would have written.
func decode(t testing.TB, f []byte) decoded {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("gopacket decode: %v", e.Error())
	}
	var d decoded
	var ls []gopacket.SerializableLayer
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.Ethernet, *layers.Dot1Q:
			ls = append(ls, l.(gopacket.SerializableLayer))
		case *layers.IPv4:
			d.ip4 = l
			ls = append(ls, l)
		case *layers.IPv6:
			d.ip6 = l
			ls = append(ls, l)
		case *layers.TCP:
			d.tcp = l
			ls = append(ls, l)
		case *layers.UDP:
			d.udp = l
			ls = append(ls, l)
		}
	}
	var nl gopacket.NetworkLayer = d.ip6
	if d.ip4 != nil {
		nl = d.ip4
	}
	switch {
	case d.tcp != nil:
		_ = d.tcp.SetNetworkLayerForChecksum(nl)
		d.payload = d.tcp.Payload
	case d.udp != nil:
		_ = d.udp.SetNetworkLayerForChecksum(nl)
		d.payload = d.udp.Payload
	default:
		t.Fatalf("no transport layer in %v", p)
	}
	ls = append(ls, gopacket.Payload(d.payload))
	again := serialize(t, ls...)
	if d.udp != nil && d.udp.Checksum == 0 { // gopacket does not send 0 as 0xffff
		binary.BigEndian.PutUint16(again[len(f)-len(d.payload)-2:], 0xffff)
	}
	if len(f) < 60 { // gopacket pads to the Ethernet minimum
		require.Len(t, again, 60)
		again = again[:len(f)]
	}
	require.Equal(t, f, again, "gopacket re-serialization")
	return d
}

// collect returns an emit that keeps a copy of every frame, and the frames.
func collect() (func([]byte) error, *[][]byte) {
	var got [][]byte
	return func(f []byte) error {
		got = append(got, append([]byte(nil), f...))
		return nil
	}, &got
}
