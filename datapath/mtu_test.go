package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/stats"
)

// An endpoint's switch port has its interface's MTU: a jumbo frame one
// endpoint sends to another is dropped at the egress port (as a bridge
// does) and counted there as mtu-exceeded; one that fits is delivered.
func TestEndpointPortMTU(t *testing.T) {
	tp := start(t, testPlan(true))
	web2MAC := mac4(netip.MustParseAddr("172.20.0.11"))
	frame := func(payload int) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: netip.MustParseAddr("172.20.0.10").AsSlice(), DstIP: netip.MustParseAddr("172.20.0.11").AsSlice()}
		u := &layers.UDP{SrcPort: 1, DstPort: 2}
		_ = u.SetNetworkLayerForChecksum(ip)
		return ser(t, &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(web2MAC), EthernetType: layers.EthernetTypeIPv4},
			ip, u, gopacket.Payload(make([]byte, payload)))
	}
	tp.mems["web"].Inject(frame(1500 - 28))
	require.NotNil(t, tp.mems["web2"].Recv(2*time.Second), "1500 bytes of IP fit")
	tp.mems["web"].Inject(frame(9000 - 28))
	require.Eventually(t, func() bool {
		for _, p := range tp.dp.Ports() {
			if p.Name == "web2" {
				return p.Drops[stats.MTUExceeded.String()] == 1
			}
		}
		return false
	}, 2*time.Second, time.Millisecond)
	require.Nil(t, tp.mems["web2"].Recv(50*time.Millisecond), "9000 bytes of IP are not delivered")
}
