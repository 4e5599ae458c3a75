package trace

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// IPv6 packets to trace are built with the checksums gopacket computes,
// and described as tcpdump would.
func TestBuildAndDescribe6(t *testing.T) {
	for _, c := range []struct {
		proto, want string
	}{
		{"tcp", "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 fd00:20::10.40000 > fd00:21::20.80 tcp [S], hlim 64, payload length 20"},
		{"udp", "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 fd00:20::10.40000 > fd00:21::20.53 udp, hlim 64, payload length 8"},
		{"icmp", "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 fd00:20::10 > fd00:21::20 icmp6 type 128 code 0, hlim 64, payload length 8"},
	} {
		dport := map[string]uint16{"tcp": 80, "udp": 53}[c.proto]
		f := frameOf(t, c.proto, "fd00:20::10", "fd00:21::20", 40000, dport)
		require.Equal(t, c.want, Describe(f))
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		require.Nil(t, p.ErrorLayer())
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		var l gopacket.SerializableLayer
		var sum func() uint16
		var payload []byte
		switch c.proto {
		case "tcp":
			x := *p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			require.NoError(t, x.SetNetworkLayerForChecksum(ip))
			l, sum, payload = &x, func() uint16 { return x.Checksum }, x.Payload
		case "udp":
			x := *p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			require.NoError(t, x.SetNetworkLayerForChecksum(ip))
			l, sum, payload = &x, func() uint16 { return x.Checksum }, x.Payload
		default:
			x := *p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			require.NoError(t, x.SetNetworkLayerForChecksum(ip))
			l, sum, payload = &x, func() uint16 { return x.Checksum }, x.Payload
		}
		want := sum()
		require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, l, gopacket.Payload(payload)))
		require.Equal(t, want, sum(), "%s checksum", c.proto)
	}
	_, err := Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("fd00::1")}.Build()
	require.ErrorContains(t, err, "both IPv4 or both IPv6")
}
