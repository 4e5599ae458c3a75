package router

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// natRig is the rig with front masqueraded and web on it publishing
// 5353:5300/udp.
func natRig(t *testing.T) *rig {
	g := newRig(t, true, 1500, func(p *config.Plan) {
		p.Networks[0].Masquerade = true
		p.Endpoints = append(p.Endpoints, config.Endpoint{Name: "web", Mode: config.ModeBridge,
			Interfaces: []config.Interface{{Name: "eth0", Network: "front", IP: webIP, Gateway: frontGW.Addr()}},
			Publish:    []config.Publish{{HostPort: 5353, ContainerPort: 5300, Proto: "udp"}}})
	})
	g.learn(t, "uplink", hostIP, hostMAC)
	g.learn(t, "gw/front", webIP, webMAC)
	return g
}

// bigUDP is a UDP datagram of either family (by the addresses) of n
// payload bytes from src to dst in a frame to dmac.
func bigUDP(t testing.TB, smac, dmac packet.MAC, src, dst netip.AddrPort, n int) []byte {
	eth, ip := ipOf(smac, dmac, src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = byte(i*13 + 1)
	}
	return append([]byte(nil), serialize(t, eth, ip, udp, gopacket.Payload(pl))...)
}

// ipLayer is an IPv4 or IPv6 header to build a packet with.
type ipLayer interface {
	gopacket.NetworkLayer
	gopacket.SerializableLayer
}

// ipOf are the Ethernet header from smac to dmac and the IP header from
// src to dst (TTL or hop limit 64) of a packet of their family.
func ipOf(smac, dmac packet.MAC, src, dst netip.Addr, proto layers.IPProtocol) (*layers.Ethernet, ipLayer) {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}
	if src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		return eth, &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	return eth, &layers.IPv4{Version: 4, TTL: 64, Id: 4321, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// splitFrame fragments a frame's datagram as a sending host with a 1500
// MTU does.
func splitFrame(frame []byte) [][]byte {
	const eh = packet.EthernetHeaderLen
	ip := packet.IPv4(frame[eh:])
	hl := ip.HeaderLen()
	data := ip[hl:ip.TotalLen()]
	chunk := (1500 - hl) &^ 7
	var out [][]byte
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		f := append(append([]byte(nil), frame[:eh+hl]...), data[off:end]...)
		fip := packet.IPv4(f[eh:])
		fo := uint16(off / 8)
		if end < len(data) {
			fo |= packet.IPv4MoreFragments
		}
		fip.SetFlagsOffset(fo)
		fip.SetTotalLen(uint16(hl + end - off))
		fip.SetHeaderChecksum()
		out = append(out, f)
	}
	return out
}

// rejoin checks that every frame is an IPv4 fragment of at most mtu bytes
// from src to dst and reassembles them with gopacket's defragmenter,
// independent of package defrag.
func rejoin(t *testing.T, frames [][]byte, src, dst netip.Addr, mtu int) *layers.UDP {
	t.Helper()
	d := ip4defrag.NewIPv4Defragmenter()
	var whole *layers.IPv4
	for _, f := range frames {
		p := decode(f)
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		require.True(t, ok)
		require.LessOrEqual(t, int(ip.Length), mtu, "a fragment within the MTU")
		require.Equal(t, src.AsSlice(), []byte(ip.SrcIP.To4()), "every fragment's source")
		require.Equal(t, dst.AsSlice(), []byte(ip.DstIP.To4()), "every fragment's destination")
		requireChecksumsValidIP(t, ip)
		out, err := d.DefragIPv4(ip)
		require.NoError(t, err)
		if out != nil {
			whole = out
		}
	}
	require.NotNil(t, whole, "the fragments make a whole datagram")
	u := &layers.UDP{}
	require.NoError(t, u.DecodeFromBytes(whole.Payload, gopacket.NilDecodeFeedback))
	c := *u
	_ = c.SetNetworkLayerForChecksum(whole)
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	require.Equal(t, u.Checksum, c.Checksum, "the whole datagram's UDP checksum")
	return u
}

func requireChecksumsValidIP(t *testing.T, ip *layers.IPv4) {
	t.Helper()
	fresh := *ip
	require.NoError(t, fresh.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}))
	require.Equal(t, ip.Checksum, fresh.Checksum, "IPv4 header checksum")
}

// A fragmented datagram is reassembled before conntrack, translated whole
// and fragmented again: through masquerade every fragment leaves with the
// uplink's address (none with the endpoint's), and to a published UDP port
// every fragment reaches the endpoint.
func TestFragmentsTranslatedWhole(t *testing.T) {
	for _, n := range []int{6000, 60000} {
		g := natRig(t)
		cli := netip.AddrPortFrom(webIP, 40000)
		srv := netip.AddrPortFrom(hostIP, 9000)
		orig := bigUDP(t, webMAC, macFor(frontGW.Addr()), cli, srv, n)
		for _, f := range splitFrame(orig) {
			g.ports["gw/front"].Input(f, packet.Offload{})
		}
		out := g.links["uplink"].take()
		require.Greater(t, len(out), 1, "%d bytes: sent as fragments", n)
		u := rejoin(t, out, uplinkIP.Addr(), hostIP, 1500)
		require.EqualValues(t, 40000, u.SrcPort)
		require.Len(t, u.Payload, n)
		require.True(t, bytes.Equal(decodeUDPPayload(orig), u.Payload), "the payload arrives intact")

		// the reply, fragmented too, comes back to web
		reply := bigUDP(t, hostMAC, macFor(uplinkIP.Addr()), srv, netip.AddrPortFrom(uplinkIP.Addr(), 40000), n)
		for _, f := range splitFrame(reply) {
			g.ports["uplink"].Input(f, packet.Offload{})
		}
		u = rejoin(t, g.links["gw/front"].take(), hostIP, webIP, 1500)
		require.EqualValues(t, 40000, u.DstPort)

		// to the published port from the host side
		pub := bigUDP(t, hostMAC, macFor(uplinkIP.Addr()), netip.AddrPortFrom(hostIP, 41000), netip.AddrPortFrom(uplinkIP.Addr(), 5353), n)
		for _, f := range splitFrame(pub) {
			g.ports["uplink"].Input(f, packet.Offload{})
		}
		u = rejoin(t, g.links["gw/front"].take(), hostIP, webIP, 1500)
		require.EqualValues(t, 5300, u.DstPort)
		require.Len(t, u.Payload, n)
		for _, p := range []string{"gw/front", "uplink"} {
			require.Empty(t, g.stats[p].Snapshot().Drops, p)
		}
		require.EqualValues(t, 3, g.r.Defrag().Reassembled.Load())
	}
}

func decodeUDPPayload(frame []byte) []byte {
	return decode(frame).Layer(layers.LayerTypeUDP).(*layers.UDP).Payload
}

// A reassembled datagram whose fragments had DF set is not fragmented
// again where the MTU is smaller: frag-needed, as Linux.
func TestReassembledWithDFGetsFragNeeded(t *testing.T) {
	g := newRig(t, false, 1280)
	g.learn(t, "gw/back", dbIP, dbMAC)
	g.learn(t, "gw/front", webIP, webMAC)
	orig := bigUDP(t, webMAC, macFor(frontGW.Addr()), netip.AddrPortFrom(webIP, 4000), netip.AddrPortFrom(dbIP, 5000), 3000)
	frags := splitFrame(orig)
	for _, f := range frags {
		ip := packet.IPv4(f[packet.EthernetHeaderLen:])
		ip.SetFlagsOffset(ip.FlagsOffset() | packet.IPv4DontFragment)
		ip.SetHeaderChecksum()
		g.ports["gw/front"].Input(f, packet.Offload{})
	}
	require.Empty(t, g.links["gw/back"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.FragNeeded))
	back := g.links["gw/front"].take()
	require.Len(t, back, 1)
	requireChecksumsValid(t, back[0])
	ic := decode(back[0]).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.Equal(t, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), ic.TypeCode)
	require.EqualValues(t, 1280, ic.Seq, "the next-hop MTU")
}

// A same-network hairpin (web2 to the published port, DNATed to web on the
// same network) is bridged back as br_netfilter does: both ways keep their
// TTL, where routed traffic loses one.
func TestHairpinKeepsTTL(t *testing.T) {
	g := natRig(t)
	web2 := netip.MustParseAddr("172.20.0.11")
	web2MAC := macFor(web2)
	g.learn(t, "gw/front", web2, web2MAC)
	cli := netip.AddrPortFrom(web2, 42000)
	pub := netip.AddrPortFrom(uplinkIP.Addr(), 5353)
	g.ports["gw/front"].Input(bigUDP(t, web2MAC, macFor(frontGW.Addr()), cli, pub, 10), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	ip := decode(out[0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, webIP.AsSlice(), []byte(ip.DstIP.To4()))
	require.Equal(t, frontGW.Addr().AsSlice(), []byte(ip.SrcIP.To4()), "hairpin masquerade: from the gateway")
	require.EqualValues(t, 64, ip.TTL)
	requireChecksumsValid(t, out[0])

	// the answer, to the gateway's masquerade port, goes back to web2
	u := decode(out[0]).Layer(layers.LayerTypeUDP).(*layers.UDP)
	back := bigUDP(t, webMAC, macFor(frontGW.Addr()), netip.AddrPortFrom(webIP, 5300), netip.AddrPortFrom(frontGW.Addr(), uint16(u.SrcPort)), 10)
	g.ports["gw/front"].Input(back, packet.Offload{})
	out = g.links["gw/front"].take()
	require.Len(t, out, 1)
	ip = decode(out[0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, web2.AsSlice(), []byte(ip.DstIP.To4()))
	require.Equal(t, uplinkIP.Addr().AsSlice(), []byte(ip.SrcIP.To4()))
	require.EqualValues(t, 64, ip.TTL, "the answer arrives with TTL 64, as with the kernel")
	requireChecksumsValid(t, out[0])

	// routed traffic still loses one
	g.ports["gw/front"].Input(bigUDP(t, webMAC, macFor(frontGW.Addr()), netip.AddrPortFrom(webIP, 1), netip.AddrPortFrom(hostIP, 2), 10), packet.Offload{})
	out = g.links["uplink"].take()
	require.Len(t, out, 1)
	require.EqualValues(t, 63, decode(out[0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4).TTL)
}
