package host_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/host"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// ipFrame is an IPv4 frame from web to dst with protocol proto.
func ipFrame(t *testing.T, dst netip.Addr, proto layers.IPProtocol, edit func(*layers.IPv4), payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 5, Protocol: proto, SrcIP: webIP.AsSlice(), DstIP: dst.AsSlice()}
	if edit != nil {
		edit(ip)
	}
	return serialize(t, eth, ip, gopacket.Payload(payload))
}

func TestUnknownProtocolUnreachable(t *testing.T) {
	g := newRig(t, testPlan(true))
	g.learn(t, "gw/front", webIP, webMAC)
	in := ipFrame(t, frontGW.Addr(), layers.IPProtocolGRE, nil, make([]byte, 16))
	orig := append([]byte(nil), in...)
	g.ports["gw/front"].Input(in, packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireICMPError(t, out[0], layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeProtocol), frontGW.Addr(), orig)
}

// A fragment to the router's own address is held by the router's
// reassembly (package defrag) until its datagram is whole, and dropped,
// counted, when it never is.
func TestLocalFragmentHeldThenTimesOut(t *testing.T) {
	g := newRig(t, testPlan(true))
	g.learn(t, "gw/front", webIP, webMAC)
	in := ipFrame(t, frontGW.Addr(), layers.IPProtocolUDP, func(ip *layers.IPv4) { ip.Flags = layers.IPv4MoreFragments }, make([]byte, 64))
	g.ports["gw/front"].Input(in, packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	require.Equal(t, 1, g.r.Defrag().Pending())
	g.clk.Advance(30 * time.Second)
	g.r.Tick()
	require.Zero(t, g.r.Defrag().Pending())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.FragTimeout))
}

func TestBadEchoChecksumDropped(t *testing.T) {
	g := newRig(t, testPlan(true))
	g.learn(t, "gw/front", webIP, webMAC)
	in := ipFrame(t, frontGW.Addr(), layers.IPProtocolICMPv4, nil, []byte{8, 0, 0, 1, 0, 9, 0, 1})
	g.ports["gw/front"].Input(in, packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.BadChecksum))
}

// echoStream is a StreamHandler that writes back what it gets.
type echoStream struct{}

func (echoStream) Accept(host.Ingress, [4]byte, uint16) bool { return true }
func (echoStream) Data(c *host.Conn, b []byte) int           { c.Write(b); return len(b) }

func TestTCPResponderTableBounded(t *testing.T) {
	plan := testPlan(true)
	plan.Uplink = nil // else the gateway's port 7 is the host's
	g := newRig(t, plan)
	g.host.HandleTCP(7, echoStream{})
	g.learn(t, "gw/front", webIP, webMAC)
	syn := func(sport uint16) *layers.TCP {
		eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: webIP.AsSlice(), DstIP: frontGW.Addr().AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 7, Seq: 100, SYN: true, Window: 65535,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x01, 0x00}}}}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		g.ports["gw/front"].Input(serialize(t, eth, ip, tcp), packet.Offload{})
		f := g.links["gw/front"].take()
		require.Len(t, f, 1)
		return tcpOf(t, f[0])
	}
	for i := range host.MaxConns {
		r := syn(uint16(10000 + i))
		require.True(t, r.SYN && r.ACK, "connection %d", i)
	}
	require.Equal(t, host.MaxConns, g.host.Conns())
	r := syn(9999)
	require.True(t, r.RST, "a full table resets the next SYN")
	require.Equal(t, host.MaxConns, g.host.Conns())
	g.clk.Advance(host.IdleTimeout + 1)
	g.learn(t, "gw/front", webIP, webMAC) // the router's entry aged meanwhile
	r = syn(9999)
	require.True(t, r.SYN && r.ACK, "idle connections make room")
	require.Equal(t, 1, g.host.Conns())

	// The client's MSS (256) cuts what the handler writes.
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: webIP.AsSlice(), DstIP: frontGW.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: 9999, DstPort: 7, Seq: 101, Ack: r.Seq + 1, ACK: true, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	g.ports["gw/front"].Input(serialize(t, eth, ip, tcp, gopacket.Payload(make([]byte, 600))), packet.Offload{})
	f := g.links["gw/front"].take()
	require.Len(t, f, 3)
	for i, n := range []int{256, 256, 88} {
		seg := tcpOf(t, f[i])
		require.Len(t, seg.Payload, n)
		require.Equal(t, r.Seq+1+uint32(256*i), seg.Seq)
		require.EqualValues(t, 701, seg.Ack)
	}
}
