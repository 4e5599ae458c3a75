package vswitch

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// bigFrame is an Ethernet/IPv4/UDP frame whose IP packet is ipLen bytes.
func bigFrame(t *testing.T, src, dst packet.MAC, ipLen int) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, src[5]}, DstIP: net.IP{10, 0, 0, dst[5]}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(make([]byte, ipLen-28))))
	return buf.Bytes()
}

// Like a Linux bridge, the switch never delivers a frame larger than the
// egress port's MTU (plus Ethernet header and a VLAN tag): it drops it,
// counted on that port; a super-frame (offloaded, segmented by whoever
// takes it) passes.
func TestFrameOverEgressMTUDropped(t *testing.T) {
	sw := New(Config{Name: "test", Clock: &clock.Fake{}})
	a, b := &sink{}, &sink{}
	pa, err := sw.AddPort(PortConfig{Name: "a", MTU: 9000}, a)
	require.NoError(t, err)
	pb, err := sw.AddPort(PortConfig{Name: "b", MTU: 1500}, b)
	require.NoError(t, err)
	_ = pa

	for _, tc := range []struct {
		ipLen int
		off   packet.Offload
		pass  bool
	}{
		{1500, packet.Offload{}, true},
		{1504, packet.Offload{}, true}, // room for a VLAN tag, as the bridge allows
		{1505, packet.Offload{}, false},
		{9000, packet.Offload{}, false},
		{9000, packet.Offload{GSOType: packet.GSOUDPL4, GSOSize: 1472}, true},
	} {
		sw.Input(pa, bigFrame(t, mac(1), mac(2), tc.ipLen), tc.off)
		require.Equal(t, tc.pass, len(b.take()) == 1, "%d bytes of IP, %+v", tc.ipLen, tc.off)
	}
	require.EqualValues(t, 2, pb.Stats.Dropped(stats.MTUExceeded))
	require.EqualValues(t, 3, pb.Stats.TxPackets.Load())

	// the other way, 9000 fits
	sw.Input(pb, bigFrame(t, mac(2), mac(1), 1500), packet.Offload{})
	require.Len(t, a.take(), 1)
}
