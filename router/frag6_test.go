package router

import (
	"bytes"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// natRig6 is the IPv6 rig with front masqueraded and web (web6 on it)
// publishing 5353:5300/udp, its neighbours known.
func natRig6(t *testing.T, mtuBack int) *rig {
	g := newRig6(t, mtuBack, func(p *config.Plan) {
		p.Networks[0].Masquerade6 = true
		p.Endpoints = append(p.Endpoints, config.Endpoint{Name: "web", Mode: config.ModeBridge,
			Interfaces: []config.Interface{{Name: "eth0", Network: "front", IP: webIP, IP6: web6, Gateway: frontGW.Addr()}},
			Publish:    []config.Publish{{HostPort: 5353, ContainerPort: 5300, Proto: "udp"}}})
	})
	g.learn6(t, "uplink", host6, hostMAC)
	g.learn6(t, "gw/front", web6, webMAC)
	g.learn6(t, "gw/back", db6, dbMAC)
	return g
}

// split6 fragments a frame's IPv6 datagram (ID id) into fragments of at
// most size bytes, as a sending host does.
func split6(frame []byte, id uint32, size int) [][]byte {
	const eh = packet.EthernetHeaderLen
	ip := packet.IPv6(frame[eh:])
	at, named, _ := ip.Unfragmentable()
	chunk := (size - at - packet.IPv6FragmentLen) &^ 7
	n := len(ip) - at
	var out [][]byte
	for off := 0; off < n; off += chunk {
		end := min(off+chunk, n)
		f := make([]byte, eh+at+packet.IPv6FragmentLen+end-off)
		copy(f, frame[:eh])
		packet.PutFragment6(f[eh:], ip, at, named, off, end, end < n, id)
		out = append(out, f)
	}
	return out
}

// rejoin6 checks that every frame is an IPv6 fragment (gopacket decodes
// its fragment header) of at most size bytes from src to dst, all of one
// identification, and joins them (by gopacket's view of their offsets) into
// the UDP datagram they carry, whose checksum gopacket verifies.
func rejoin6(t *testing.T, frames [][]byte, src, dst netip.Addr, size int) *layers.UDP {
	t.Helper()
	require.Greater(t, len(frames), 1, "sent as fragments")
	type piece struct {
		off  int
		data []byte
	}
	var pieces []piece
	var id uint32
	var ip0 *layers.IPv6
	for i, f := range frames {
		p := decode(f)
		ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		require.True(t, ok)
		require.LessOrEqual(t, len(ip.Contents)+len(ip.Payload), size, "a fragment no larger than the largest original")
		require.Equal(t, src.String(), ip.SrcIP.String(), "every fragment's source")
		require.Equal(t, dst.String(), ip.DstIP.String(), "every fragment's destination")
		fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
		require.True(t, ok, "a fragment header")
		if i == 0 {
			id, ip0 = fh.Identification, ip
		}
		require.Equal(t, id, fh.Identification)
		require.Equal(t, i < len(frames)-1, fh.MoreFragments)
		pieces = append(pieces, piece{int(fh.FragmentOffset) * 8, fh.Payload})
	}
	sort.Slice(pieces, func(i, j int) bool { return pieces[i].off < pieces[j].off })
	var whole []byte
	for _, pc := range pieces {
		require.Equal(t, len(whole), pc.off, "no gap, no overlap")
		whole = append(whole, pc.data...)
	}
	u := &layers.UDP{}
	require.NoError(t, u.DecodeFromBytes(whole, gopacket.NilDecodeFeedback))
	c := *u
	_ = c.SetNetworkLayerForChecksum(ip0)
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	require.Equal(t, u.Checksum, c.Checksum, "the whole datagram's UDP checksum")
	return u
}

// IPv6 fragments are reassembled before conntrack as IPv4 ones, the
// datagram translated whole and sent out as fragments no larger than the
// largest that came: through masquerade6 every fragment leaves with the
// uplink's address (none with the endpoint's), the reply comes back, and a
// datagram to a published port reaches the endpoint, in any order.
func TestFragments6TranslatedWhole(t *testing.T) {
	for _, n := range []int{6000, 60000} {
		g := natRig6(t, 1500)
		cli := netip.AddrPortFrom(web6, 40000)
		srv := netip.AddrPortFrom(host6, 9000)
		orig := bigUDP(t, webMAC, gwMAC("gw/front"), cli, srv, n)
		for _, f := range split6(orig, 0x10, 1500) {
			g.ports["gw/front"].Input(f, packet.Offload{})
		}
		u := rejoin6(t, g.links["uplink"].take(), addr6["uplink"].Addr(), host6, 1500)
		require.EqualValues(t, 40000, u.SrcPort)
		require.True(t, bytes.Equal(decodeUDPPayload(orig), u.Payload), "the payload arrives intact")

		// the reply, fragmented at 1280 and sent last first, comes back to web at 1280
		reply := bigUDP(t, hostMAC, gwMAC("uplink"), srv, netip.AddrPortFrom(addr6["uplink"].Addr(), 40000), n)
		fs := split6(reply, 0x20, 1280)
		fs = append([][]byte{fs[len(fs)-1]}, fs[:len(fs)-1]...)
		for _, f := range fs {
			g.ports["uplink"].Input(f, packet.Offload{})
		}
		u = rejoin6(t, g.links["gw/front"].take(), host6, web6, 1280)
		require.EqualValues(t, 40000, u.DstPort)
		require.Len(t, u.Payload, n)

		// to the published port from the host side
		pub := bigUDP(t, hostMAC, gwMAC("uplink"), netip.AddrPortFrom(host6, 41000), netip.AddrPortFrom(addr6["uplink"].Addr(), 5353), n)
		for _, f := range split6(pub, 0x30, 1400) {
			g.ports["uplink"].Input(f, packet.Offload{})
		}
		u = rejoin6(t, g.links["gw/front"].take(), host6, web6, 1400)
		require.EqualValues(t, 5300, u.DstPort)
		require.True(t, bytes.Equal(decodeUDPPayload(pub), u.Payload))
		for _, p := range []string{"gw/front", "uplink"} {
			require.Empty(t, g.stats[p].Snapshot().Drops, p)
		}
		require.EqualValues(t, 3, g.r.Defrag().Reassembled.Load())
	}
}

// A reassembled datagram whose largest fragment exceeds the egress MTU is
// answered with packet too big (the router does not fragment it smaller);
// an atomic fragment passes as it is; overlapping fragments drop the
// datagram, counted.
func TestFragments6TooBigAtomicOverlap(t *testing.T) {
	g := natRig6(t, 1280)
	orig := bigUDP(t, webMAC, gwMAC("gw/front"), netip.AddrPortFrom(web6, 4000), netip.AddrPortFrom(db6, 5000), 3000)
	for _, f := range split6(orig, 1, 1500) {
		g.ports["gw/front"].Input(f, packet.Offload{})
	}
	require.Empty(t, g.links["gw/back"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.PacketTooBig))
	back := g.links["gw/front"].take()
	require.Len(t, back, 1)
	_, m := requireICMPv6(t, back[0], layers.ICMPv6TypePacketTooBig, 0, addr6["gw/front"].Addr(), web6)
	require.EqualValues(t, 1280, uint32(m.Payload[0])<<24|uint32(m.Payload[1])<<16|uint32(m.Payload[2])<<8|uint32(m.Payload[3]))

	// fragmented at 1280 it passes, at 1280
	for _, f := range split6(orig, 2, 1280) {
		g.ports["gw/front"].Input(f, packet.Offload{})
	}
	u := rejoin6(t, g.links["gw/back"].take(), web6, db6, 1280)
	require.Len(t, u.Payload, 3000)

	// an atomic fragment (offset 0, no more): not held, forwarded as it is
	small := bigUDP(t, webMAC, gwMAC("gw/front"), netip.AddrPortFrom(web6, 4001), netip.AddrPortFrom(db6, 5000), 100)
	atomic := split6(small, 3, 1500)
	require.Len(t, atomic, 1)
	before := g.r.Defrag().Reassembled.Load()
	g.ports["gw/front"].Input(atomic[0], packet.Offload{})
	out := g.links["gw/back"].take()
	require.Len(t, out, 1)
	require.Equal(t, before, g.r.Defrag().Reassembled.Load())
	p := decode(out[0])
	fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	require.True(t, ok, "the fragment header stays")
	require.False(t, fh.MoreFragments)
	require.EqualValues(t, 3, fh.Identification)

	// overlap: the datagram is dropped and its fragments counted
	fs := split6(orig, 4, 1280)
	bad := append([]byte(nil), fs[1]...)
	ip := packet.IPv6(bad[packet.EthernetHeaderLen:])
	at, _, _ := ip.FragmentAt()
	packet.IPv6Fragment(ip[at:]).Encode(&packet.IPv6FragmentFields{NextHeader: packet.ProtoUDP, Offset: 16, More: true, ID: 4})
	for _, f := range [][]byte{fs[0], bad, fs[1], fs[2]} {
		g.ports["gw/front"].Input(f, packet.Offload{})
	}
	require.Empty(t, g.links["gw/back"].take())
	require.EqualValues(t, 2, g.stats["gw/front"].Dropped(stats.FragOverlap))
}

// A ping6 to the gateway larger than the MTU comes in fragments, is
// reassembled and answered; the router fragments its own answer to the
// egress MTU, as a host does.
func TestLargePing6ToGatewayAnsweredInFragments(t *testing.T) {
	g := natRig6(t, 1500)
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(gwMAC("gw/front")), EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: web6.AsSlice(), DstIP: addr6["gw/front"].Addr().AsSlice()}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	_ = m.SetNetworkLayerForChecksum(ip)
	data := bytes.Repeat([]byte("ping6 "), 500)
	req := serialize(t, eth, ip, m, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}, gopacket.Payload(data))
	for _, f := range split6(req, 9, 1280) {
		g.ports["gw/front"].Input(f, packet.Offload{})
	}
	out := g.links["gw/front"].take()
	require.Greater(t, len(out), 1, "the answer leaves in fragments")
	var whole []byte
	for i, f := range out {
		require.LessOrEqual(t, len(f)-packet.EthernetHeaderLen, 1500)
		fip := packet.IPv6(f[packet.EthernetHeaderLen:])
		at, _, ok := fip.FragmentAt()
		require.True(t, ok)
		require.Equal(t, len(whole), packet.IPv6Fragment(fip[at:]).Offset())
		require.Equal(t, i < len(out)-1, packet.IPv6Fragment(fip[at:]).More())
		whole = append(whole, fip[at+packet.IPv6FragmentLen:]...)
	}
	// the reply, rebuilt, checked by gopacket
	first := packet.IPv6(out[0][packet.EthernetHeaderLen:])
	rebuilt := append(append([]byte(nil), out[0][:packet.EthernetHeaderLen+packet.IPv6HeaderLen]...), whole...)
	rip := packet.IPv6(rebuilt[packet.EthernetHeaderLen:])
	rip[6] = packet.ProtoICMPv6
	rip.SetPayloadLen(uint16(len(whole)))
	_, rm := requireICMPv6(t, rebuilt, layers.ICMPv6TypeEchoReply, 0, addr6["gw/front"].Addr(), web6)
	require.Equal(t, web6.As16(), first.Dst())
	require.True(t, bytes.HasSuffix(rm.Payload, data), "the reply carries the request's data")
}
