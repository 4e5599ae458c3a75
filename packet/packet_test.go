package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

func udpFrame(t testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 7, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("abcde")))
	return buf.Bytes()
}

func TestViews(t *testing.T) {
	f := udpFrame(t)
	e := Ethernet(f)
	require.True(t, e.Valid())
	require.Equal(t, MAC{2, 0, 0, 0, 0, 2}, e.Dst())
	require.Equal(t, MAC{2, 0, 0, 0, 0, 1}, e.Src())
	require.EqualValues(t, EtherTypeIPv4, e.EtherType())
	ip := IPv4(e.Payload())
	require.True(t, ip.Valid())
	require.True(t, ip.HeaderChecksumValid())
	require.Equal(t, [4]byte{10, 0, 0, 1}, ip.Src())
	require.Equal(t, "10.0.0.2", ip.DstAddr().String())
	require.EqualValues(t, ProtoUDP, ip.Protocol())
	require.True(t, ip.DontFragment())
	require.False(t, ip.IsFragment())
	require.EqualValues(t, 7, ip.ID())
	p := Ports(ip.Payload())
	require.EqualValues(t, 1234, p.Src())
	require.EqualValues(t, 53, p.Dst())
	require.Len(t, ip.Payload(), 8+5)
	// UDP checksum over the pseudo header verifies to zero
	sum := PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoUDP, uint16(len(ip.Payload())))
	require.Zero(t, Checksum(ip.Payload(), sum))
}

func TestInvalidViews(t *testing.T) {
	f := udpFrame(t)
	require.False(t, Ethernet(f[:13]).Valid())
	ip := IPv4(append([]byte(nil), f[14:]...))
	require.False(t, ip[:19].Valid())
	ip[0] = 0x65 // version 6
	require.False(t, ip.Valid())
	ip[0] = 0x4f // IHL 60 > total length
	require.False(t, ip.Valid())
	require.False(t, ARP(make([]byte, 27)).Valid())
	tagged := append(append([]byte(nil), f[:12]...), 0x81, 0x00, 0x00)
	_, ok := Ethernet(tagged).VLAN()
	require.False(t, ok)
}

func TestDecTTLKeepsChecksumValid(t *testing.T) {
	ip := IPv4(udpFrame(t)[14:])
	for range 63 {
		ip.DecTTL()
		require.True(t, ip.HeaderChecksumValid(), "TTL %d", ip.TTL())
	}
}

// TestIncrementalUpdate: RFC 1624 updates agree with full recomputation,
// for random data and random field changes.
func TestIncrementalUpdate(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		b := make([]byte, 40)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b[10:12], 0)
		binary.BigEndian.PutUint16(b[10:12], Checksum(b, 0))
		old4 := [4]byte(b[12:16])
		new4 := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		copy(b[12:16], new4[:])
		binary.BigEndian.PutUint16(b[10:12], ChecksumUpdate32(binary.BigEndian.Uint16(b[10:12]), old4, new4))
		require.Zero(t, Checksum(b, 0))
		old16 := binary.BigEndian.Uint16(b[20:22])
		new16 := uint16(r.Uint32())
		binary.BigEndian.PutUint16(b[20:22], new16)
		binary.BigEndian.PutUint16(b[10:12], ChecksumUpdate16(binary.BigEndian.Uint16(b[10:12]), old16, new16))
		require.Zero(t, Checksum(b, 0))
	}
}

func TestBuilders(t *testing.T) {
	b := make([]byte, 64)
	f := PutARP(b, ARPRequest, Broadcast, MAC{2, 0, 0, 0, 0, 1}, [4]byte{10, 0, 0, 1}, MAC{}, [4]byte{10, 0, 0, 2})
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	a := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPRequest, a.Operation)
	require.Equal(t, []byte{10, 0, 0, 2}, []byte(a.DstProtAddress))

	h := make(IPv4, 20)
	h.Encode(&IPv4Fields{TotalLen: 20, ID: 9, TTL: 64, Protocol: ProtoICMP, Src: [4]byte{1, 2, 3, 4}, Dst: [4]byte{5, 6, 7, 8}})
	ip := gopacket.NewPacket(h, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	c := *ip
	require.NoError(t, c.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}))
	require.Equal(t, ip.Checksum, c.Checksum)
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("02:42:AC:14:00:0a")
	require.NoError(t, err)
	require.Equal(t, "02:42:ac:14:00:0a", m.String())
	require.EqualValues(t, 0x0242ac14000a, m.Uint64())
	require.Equal(t, m, MACFromUint64(m.Uint64()))
	require.True(t, Broadcast.IsMulticast())
	_, err = ParseMAC("02:42:ac:14:00:0a:00:00")
	require.Error(t, err)
}

func FuzzViews(f *testing.F) {
	f.Add(udpFrame(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := Ethernet(b)
		if !e.Valid() {
			return
		}
		_, _ = e.VLAN()
		if ip := IPv4(e.Payload()); ip.Valid() {
			_ = ip.HeaderChecksumValid()
			_ = ip.Payload()
		}
		if a := ARP(e.Payload()); a.Valid() {
			_ = a.TargetIP()
		}
		checkTransport(t, e.Payload())
	})
}
