package nat

import (
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// truncated cuts an IPv4 packet to n bytes, total length included.
func truncated(b []byte, n int) []byte {
	b = clone(b[:n])
	b[2], b[3] = byte(n>>8), byte(n)
	return b
}

var fuzzIfaces = []string{"front", "back", "secure", UplinkName}

// sumsValid reports whether every checksum of an IPv4 packet that can be
// checked verifies, computed from scratch (RFC 1071 sums, not the
// incremental updates the hooks make): the IP header; for a packet that
// is no fragment, TCP and UDP over the pseudo header (a UDP checksum 0
// means none) and ICMP over the message, when the transport header is
// whole; for an ICMP error, the quoted packet likewise when it is quoted
// whole, its IP header when it is not.
func sumsValid(ip packet.IPv4) bool {
	if !ip.Valid() || !ip.HeaderChecksumValid() {
		return false
	}
	ip = ip[:ip.TotalLen()]
	if ip.IsFragment() {
		return true
	}
	l4 := ip.Payload()
	switch ip.Protocol() {
	case packet.ProtoTCP:
		if len(l4) >= 20 {
			return packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoTCP, uint16(len(l4)))) == 0
		}
	case packet.ProtoUDP:
		if u := packet.UDP(l4); u.Valid() && int(u.Length()) == len(l4) && u.Checksum() != 0 {
			return packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoUDP, uint16(len(l4)))) == 0
		}
	case packet.ProtoICMP:
		m := packet.ICMP(l4)
		if !m.Valid() {
			return true
		}
		if packet.Checksum(m, 0) != 0 {
			return false
		}
		if inner := packet.IPv4(m[packet.ICMPHeaderLen:]); m.IsError() && inner.Valid() {
			if int(inner.TotalLen()) == len(inner) {
				return sumsValid(inner)
			}
			return inner.HeaderChecksumValid()
		}
	}
	return true
}

// FuzzHooks feeds arbitrary bytes, as an IPv4 packet arriving on any
// iface, through the hooks the way the router does, then through output
// as if the router answered it: whatever the input, nothing panics, and a
// packet whose checksums verified still verifies after whatever the hooks
// translated in it. The tracker lives across inputs, so later inputs meet
// the connections of earlier ones.
func FuzzHooks(f *testing.F) {
	g := newRig(f)
	syn := tcpPkt(f, ap(webAddr, 40000), ap(remoteAddr, 443), fSYN, "")
	dnat := udpPkt(f, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q")
	sent := clone(dnat)
	for i, seed := range [][]byte{
		syn,
		tcpPkt(f, ap(remoteAddr, 443), ap(uplinkAddr, 40000), fSYN|fACK, ""),
		tcpPkt(f, ap(web2Addr, 1), ap(uplinkAddr, 8080), fSYN, "hairpin"),
		truncated(syn, 30),
		dnat,
		udpNoSum(f, ap(webAddr, 5000), ap(remoteAddr, 53), "q"),
		ping(f, webAddr, remoteAddr, 7, 1, false),
		ping(f, remoteAddr, uplinkAddr, 7, 1, true),
		icmpError(f, webAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, sent),
		icmpError(f, hostAddr, uplinkAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, syn[:28]),
		icmpError(f, hostAddr, uplinkAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1280,
			ping(f, uplinkAddr, remoteAddr, 7, 1, false)),
		serialize(f, ipLayer(dbAddr, remoteAddr, layers.IPProtocolGRE)),
	} {
		f.Add(byte(i), seed)
	}
	f.Fuzz(func(t *testing.T, iface byte, b []byte) {
		ip := packet.IPv4(b)
		if !ip.Valid() {
			return
		}
		ip = ip[:ip.TotalLen()] // the router cuts the Ethernet padding off
		valid := sumsValid(ip)
		in := fuzzIfaces[int(iface)%len(fuzzIfaces)]
		g.run(in, ip)
		g.tr.Output(ip, fuzzIfaces[int(iface>>4)%len(fuzzIfaces)])
		if valid && !sumsValid(ip) {
			t.Fatalf("the hooks left a checksum wrong: %x", []byte(ip))
		}
		if iface == 0xff {
			g.tr.Table.Sweep(numShards)
			_ = g.tr.Table.Entries()
		}
	})
}

// TestSumsValid: FuzzHooks' checksum oracle accepts the packets the tests
// build and refuses them once an address changes without the checksums
// that cover it.
func TestSumsValid(t *testing.T) {
	syn := tcpPkt(t, ap(webAddr, 40000), ap(remoteAddr, 443), fSYN, "")
	q := udpPkt(t, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q")
	other := [4]byte{192, 0, 2, 1}
	for _, c := range []struct {
		b      []byte
		inner  bool // change the quoted packet's source, not the packet's
		broken bool // a sum beyond the IP header covers the source
	}{
		{b: syn, broken: true},
		{b: q, broken: true},
		{b: icmpError(t, webAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, q), inner: true, broken: true},
		// A quote of the header alone: the ICMP sum covers the quoted
		// header, whose own sum the change keeps, so nothing can tell.
		{b: icmpError(t, hostAddr, uplinkAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, syn[:28]), inner: true},
		{b: udpNoSum(t, ap(webAddr, 5000), ap(remoteAddr, 53), "q")},
		{b: ping(t, webAddr, remoteAddr, 7, 1, false)},
	} {
		require.True(t, sumsValid(c.b), "%x", c.b)
		bad := clone(c.b)
		ip := packet.IPv4(bad)
		if c.inner {
			ip = packet.IPv4(ip.Payload()[packet.ICMPHeaderLen:])
		}
		ip.SetSrcWithChecksumUpdate(other) // the IP header's sum, and no other
		require.Equal(t, !c.broken, sumsValid(bad), "%x", bad)
	}
	hdr := clone(syn)
	hdr[8]-- // the TTL, without the header sum
	require.False(t, sumsValid(hdr))
}

// sum6OK reports whether an IPv6 packet's transport checksum verifies
// (TCP, UDP with a checksum, ICMPv6), and whether it has one to verify.
func sum6OK(ip packet.IPv6) (ok, has bool) {
	proto, off, found := ip.Upper()
	if !found || proto != packet.ProtoTCP && proto != packet.ProtoUDP && proto != packet.ProtoICMPv6 {
		return false, false
	}
	l4 := ip[off : packet.IPv6HeaderLen+int(ip.PayloadLen())]
	if proto == packet.ProtoUDP && (len(l4) < packet.UDPHeaderLen || packet.UDP(l4).Checksum() == 0) {
		return false, false
	}
	return packet.Checksum(l4, packet.PseudoHeaderSum6(ip.Src(), ip.Dst(), proto, uint32(len(l4)))) == 0, true
}

// FuzzHooks6 is FuzzHooks for IPv6 packets, and checks more: a packet
// whose transport checksum verified when it came in verifies when it
// leaves, whatever NAT66 made of it (addresses, ports, echo ids, an
// error's quote).
func FuzzHooks6(f *testing.F) {
	g := newRig6(f)
	syn := tcpPkt(f, ap(web6, 40000), ap(remote6, 443), fSYN, "")
	dnat := udpPkt(f, ap(host6, 3000), ap(uplink6, 5353), "q")
	for i, seed := range [][]byte{
		syn,
		tcpPkt(f, ap(remote6, 443), ap(uplink6, 40000), fSYN|fACK, ""),
		tcpPkt(f, ap(web26, 1), ap(uplink6, 8080), fSYN, "hairpin"),
		dnat,
		udpPkt(f, ap(web6, 5000), ap(remote6, 53), "q"),
		ping(f, web6, remote6, 7, 1, false),
		ping(f, remote6, uplink6, 7, 1, true),
		icmp6Error(f, web6, host6, layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodePortUnreachable, 0, dnat),
		icmp6Error(f, host6, uplink6, layers.ICMPv6TypePacketTooBig, 0, 1280, syn),
		icmp6Error(f, host6, uplink6, layers.ICMPv6TypeTimeExceeded, 0, 0, syn[:48]),
		serialize(f, ip6Layer(db6, remote6, layers.IPProtocolGRE)),
	} {
		f.Add(byte(i), seed)
	}
	f.Fuzz(func(t *testing.T, iface byte, b []byte) {
		ip := packet.IPv6(b)
		if !ip.LenValid() {
			return
		}
		ip = ip[:packet.IPv6HeaderLen+int(ip.PayloadLen())] // the router cuts the Ethernet padding off
		okIn, has := sum6OK(ip)
		in := fuzzIfaces[int(iface)%len(fuzzIfaces)]
		g.run(in, ip)
		if okOut, _ := sum6OK(ip); has && okIn && !okOut {
			t.Fatalf("the checksum verified coming in, not going out: %x", []byte(ip))
		}
		g.tr.Output6(ip, fuzzIfaces[int(iface>>4)%len(fuzzIfaces)])
		if okOut, _ := sum6OK(ip); has && okIn && !okOut {
			t.Fatalf("the checksum verified coming in, not after output: %x", []byte(ip))
		}
		if iface == 0xff {
			g.tr.Table.Sweep(numShards)
			_ = g.tr.Table.Entries()
		}
	})
}
