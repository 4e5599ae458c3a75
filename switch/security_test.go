package vswitch

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// The secure port of these tests is endpoint 10.0.0.5 with MAC mac(5); the
// gateway is 10.0.0.1 (mac(1)), a neighbour 10.0.0.2 (mac(2)).
var (
	secIP  = [4]byte{10, 0, 0, 5}
	gwIP   = [4]byte{10, 0, 0, 1}
	peerIP = [4]byte{10, 0, 0, 2}
	zeroIP = [4]byte{}
)

// secureRig is a rig of two plain ports (a, b) and a third port "s" with
// the given port security.
func secureRig(t *testing.T, secure bool) (*rig, *Port) {
	t.Helper()
	r := newRig(t, 2, Config{})
	s := &sink{}
	p, err := r.sw.AddPort(PortConfig{Name: "s", Secure: secure, MAC: mac(5), IP: secIP}, s)
	require.NoError(t, err)
	r.ports = append(r.ports, p)
	r.sinks = append(r.sinks, s)
	return r, p
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return append([]byte(nil), buf.Bytes()...)
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

// udpFrame builds an Ethernet/IPv4/UDP frame with explicit addresses.
func udpFrame(t testing.TB, srcMAC, dstMAC packet.MAC, src, dst [4]byte, sport, dport uint16) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(srcMAC), DstMAC: hw(dstMAC), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(src[:]), DstIP: net.IP(dst[:])}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	return serialize(t, eth, ip, udp, gopacket.Payload("x"))
}

// arpFrame builds an Ethernet/ARP frame; ethSrc is the Ethernet source,
// sha/spa the ARP sender.
func arpFrame(t testing.TB, op uint16, ethSrc, ethDst, sha packet.MAC, spa [4]byte, tha packet.MAC, tpa [4]byte) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(ethSrc), DstMAC: hw(ethDst), EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation:       op,
		SourceHwAddress: hw(sha), SourceProtAddress: spa[:],
		DstHwAddress: hw(tha), DstProtAddress: tpa[:],
	}
	return serialize(t, eth, arp)
}

// spoofCases are frames a secure port "s" (mac(5), 10.0.0.5) must drop,
// with the reason each is counted under.
func spoofCases(t *testing.T) map[string]struct {
	frame  []byte
	reason stats.Reason
} {
	bcast := packet.Broadcast
	own := udpFrame(t, mac(5), mac(2), secIP, peerIP, 1000, 2000)
	vlan := serialize(t,
		&layers.Ethernet{SrcMAC: hw(mac(5)), DstMAC: hw(mac(2)), EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(secIP[:]), DstIP: net.IP(peerIP[:])},
		gopacket.Payload("x"))
	shortIP := append(append([]byte(nil), own[:packet.EthernetHeaderLen]...), own[packet.EthernetHeaderLen:packet.EthernetHeaderLen+12]...)
	arpOK := arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), secIP, packet.MAC{}, peerIP)
	shortARP := arpOK[:packet.EthernetHeaderLen+20]
	return map[string]struct {
		frame  []byte
		reason stats.Reason
	}{
		"source MAC of another station":       {udpFrame(t, mac(6), mac(2), secIP, peerIP, 1000, 2000), stats.PortSecurity},
		"source MAC of the gateway":           {frame(t, mac(1), bcast), stats.PortSecurity},
		"IPv4 source of a neighbour":          {udpFrame(t, mac(5), mac(2), peerIP, peerIP, 1000, 2000), stats.SpoofedIP},
		"IPv4 source of the gateway":          {udpFrame(t, mac(5), mac(1), gwIP, [4]byte{8, 8, 8, 8}, 1000, 53), stats.SpoofedIP},
		"IPv4 second address":                 {udpFrame(t, mac(5), mac(2), [4]byte{10, 0, 0, 99}, peerIP, 1000, 2000), stats.SpoofedIP},
		"IPv4 broadcast from spoofed":         {udpFrame(t, mac(5), bcast, [4]byte{10, 0, 0, 6}, [4]byte{255, 255, 255, 255}, 68, 67), stats.SpoofedIP},
		"IPv4 header cut short":               {shortIP, stats.Truncated},
		"ARP sender MAC not the port's":       {arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(6), secIP, packet.MAC{}, peerIP), stats.SpoofedARP},
		"ARP gratuitous for gateway IP":       {arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), gwIP, packet.MAC{}, gwIP), stats.SpoofedARP},
		"ARP reply claiming gateway":          {arpFrame(t, layers.ARPReply, mac(5), mac(2), mac(5), gwIP, mac(2), peerIP), stats.SpoofedARP},
		"ARP reply claiming neighbour":        {arpFrame(t, layers.ARPReply, mac(5), mac(1), mac(5), peerIP, mac(1), gwIP), stats.SpoofedARP},
		"ARP request from other IP":           {arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), [4]byte{10, 0, 0, 99}, packet.MAC{}, peerIP), stats.SpoofedARP},
		"ARP cut short":                       {shortARP, stats.BadARP},
		"VLAN tagged":                         {vlan, stats.Tagged},
		"802.1ad tagged, spoofed inner":       {qinq(t), stats.Tagged},
		"DHCP offer (rogue server)":           {udpFrame(t, mac(5), bcast, secIP, [4]byte{255, 255, 255, 255}, 67, 68), stats.DHCPServer},
		"IPv6 router advertisement":           {icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeRouterAdvertisement, nil), stats.RAGuard},
		"IPv6 redirect":                       {icmp6(t, ownLL, "fe80::1", layers.ICMPv6TypeRedirect, make([]byte, 36)), stats.RAGuard},
		"IPv6 RA behind a hop-by-hop":         {raBehindHopByHop(t), stats.RAGuard},
		"IPv6 forged link-local source":       {icmp6(t, "fe80::42:ff:fe00:2", "ff02::1", layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"IPv6 global source":                  {icmp6(t, "2001:db8::5", "ff02::1", layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"IPv6 echo from ::":                   {icmp6(t, "::", "ff02::1", layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"IPv6 NA for another's address":       {icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, naBody("fe80::42:ff:fe00:2")), stats.SpoofedND},
		"DHCPv6 advertise (rogue server)":     {udp6(t, ownLL, "fe80::42:ff:fe00:2", 547, 546), stats.DHCPServer},
		"IPv6 NA, own address, another's MAC": {icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, ndOpt(naBody(ownLL), 2, mac(2))), stats.SpoofedND},
		"IPv6 NS with another's MAC":          {icmp6(t, ownLL, "ff02::1:ff00:2", layers.ICMPv6TypeNeighborSolicitation, ndOpt(naBody("fe80::42:ff:fe00:2"), 1, mac(2))), stats.SpoofedND},
		"IPv6 RS with another's MAC":          {icmp6(t, ownLL, "ff02::2", layers.ICMPv6TypeRouterSolicitation, ndOpt(make([]byte, 4), 1, mac(2))), stats.SpoofedND},
		"IPv6 NS with a zero-length option":   {icmp6(t, ownLL, "ff02::1:ff00:2", layers.ICMPv6TypeNeighborSolicitation, append(naBody("fe80::42:ff:fe00:2"), 1, 0, 0, 0, 0, 0, 0, 0)), stats.SpoofedND},
		"IPv6 header cut short":               {ipv6Short(t), stats.Truncated},
	}
}

func TestPortSecuritySpoofingDropped(t *testing.T) {
	for name, c := range spoofCases(t) {
		t.Run(name, func(t *testing.T) {
			r, p := secureRig(t, true)
			r.sw.Input(p, c.frame, packet.Offload{})
			require.Equal(t, []int{0, 0, 0}, r.delivered(), "nothing is delivered")
			snap := p.Stats.Snapshot()
			require.Equal(t, map[string]uint64{c.reason.String(): 1}, snap.Drops, "counted once, under its own reason")
			require.EqualValues(t, 1, snap.RxPackets)
			require.Empty(t, r.sw.Entries(), "a dropped frame teaches the switch nothing")
		})
	}
}

func TestPortSecurityReasonNames(t *testing.T) {
	require.Equal(t, "port-security", stats.PortSecurity.String())
	require.Equal(t, "spoofed-ip", stats.SpoofedIP.String())
	require.Equal(t, "spoofed-arp", stats.SpoofedARP.String())
}

// TestPortSecurityAllowsOwnTraffic: what an endpoint legitimately sends
// passes, DHCP-style 0.0.0.0 sources and ARP probes included.
func TestPortSecurityAllowsOwnTraffic(t *testing.T) {
	bcast := packet.Broadcast
	ipv6 := serialize(t,
		&layers.Ethernet{SrcMAC: hw(mac(5)), DstMAC: hw(packet.MAC{0x33, 0x33, 0, 0, 0, 2}), EthernetType: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolNoNextHeader, SrcIP: net.ParseIP("fe80::42:ff:fe00:5"), DstIP: net.ParseIP("ff02::2")})
	cases := map[string][]byte{
		"own IPv4 unicast":            udpFrame(t, mac(5), mac(2), secIP, peerIP, 1000, 2000),
		"own IPv4 to the world":       udpFrame(t, mac(5), mac(1), secIP, [4]byte{8, 8, 8, 8}, 1000, 53),
		"DHCP discover from 0.0.0.0":  udpFrame(t, mac(5), bcast, zeroIP, [4]byte{255, 255, 255, 255}, 68, 67),
		"ARP request":                 arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), secIP, packet.MAC{}, peerIP),
		"ARP reply":                   arpFrame(t, layers.ARPReply, mac(5), mac(2), mac(5), secIP, mac(2), peerIP),
		"ARP probe from 0.0.0.0":      arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), zeroIP, packet.MAC{}, secIP),
		"gratuitous ARP for own IP":   arpFrame(t, layers.ARPRequest, mac(5), bcast, mac(5), secIP, packet.MAC{}, secIP),
		"IPv6 from own MAC (not L3)":  ipv6,
		"IPv6 DAD neighbour solicit":  icmp6(t, "::", "ff02::1:ff00:5", layers.ICMPv6TypeNeighborSolicitation, naBody(ownLL)),
		"IPv6 MLDv2 report from ::":   icmp6(t, "::", "ff02::16", 143, make([]byte, 4)),
		"IPv6 router solicit":         icmp6(t, ownLL, "ff02::2", layers.ICMPv6TypeRouterSolicitation, make([]byte, 4)),
		"IPv6 NA for own address":     icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, naBody(ownLL)),
		"IPv6 NA with own MAC option": icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, ndOpt(naBody(ownLL), 2, mac(5))),
		"IPv6 NS with own MAC option": icmp6(t, ownLL, "ff02::1:ff00:2", layers.ICMPv6TypeNeighborSolicitation, ndOpt(naBody("fe80::42:ff:fe00:2"), 1, mac(5))),
		"DHCPv6 solicit (client)":     udp6(t, ownLL, "ff02::1:2", 546, 547),
		"DHCP request (client, 68)":   udpFrame(t, mac(5), bcast, secIP, [4]byte{255, 255, 255, 255}, 68, 67),
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			r, p := secureRig(t, true)
			r.sw.Input(p, f, packet.Offload{})
			require.Equal(t, []int{1, 1, 0}, r.delivered(), "flooded to both other ports")
			require.Empty(t, p.Stats.Snapshot().Drops)
		})
	}
}

// TestPortSecurityOptOut: with Secure false (port_security = false for the
// endpoint) every spoofing frame that is a valid Ethernet frame is switched.
func TestPortSecurityOptOut(t *testing.T) {
	for name, c := range spoofCases(t) {
		t.Run(name, func(t *testing.T) {
			r, p := secureRig(t, false)
			r.sw.Input(p, c.frame, packet.Offload{})
			require.Empty(t, p.Stats.Snapshot().Drops)
			require.Equal(t, []int{1, 1, 0}, r.delivered(), "switched like any frame (nothing is learned yet: flooded)")
		})
	}
}

// counter is a Device that counts frames without keeping them.
type counter struct{ n int }

func (c *counter) WriteFrame([]byte, packet.Offload) error { c.n++; return nil }

// floodMAC returns the i-th MAC of a flood: locally administered unicast,
// pseudo-random low 40 bits, distinct for every i < 2^40 (multiplying by an
// odd number is a bijection modulo 2^40).
func floodMAC(i int) packet.MAC {
	x := uint64(i+1) * 0xbf58476d1ce4e5b9 & (1<<40 - 1)
	return packet.MAC{0x06, byte(x >> 32), byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}
}

const (
	floodFrames  = 100_000
	floodFDBMax  = 8192     // the default fdb_max
	floodHeapMax = 16 << 20 // bytes of live heap the flood may add
	knownEvery   = 100      // a known-flow frame after every so many flood frames
)

// floodRig is a switch with two stations that talk (a: mac(1), b: mac(2),
// learned) and an attacker's port c.
func floodRig(t *testing.T, secure bool) (sw *Switch, a, b, c *Port, ca, cb *counter) {
	t.Helper()
	sw = New(Config{Name: "flood", Clock: &clock.Fake{}, MaxEntries: floodFDBMax})
	ca, cb = &counter{}, &counter{}
	a, err := sw.AddPort(PortConfig{Name: "a"}, ca)
	require.NoError(t, err)
	b, err = sw.AddPort(PortConfig{Name: "b"}, cb)
	require.NoError(t, err)
	c, err = sw.AddPort(PortConfig{Name: "c", Secure: secure, MAC: mac(3), IP: [4]byte{10, 0, 0, 3}}, &counter{})
	require.NoError(t, err)
	sw.Input(a, frame(t, mac(1), packet.Broadcast), packet.Offload{})
	sw.Input(b, frame(t, mac(2), packet.Broadcast), packet.Offload{})
	require.Len(t, sw.Entries(), 2)
	ca.n, cb.n = 0, 0
	return sw, a, b, c, ca, cb
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMACFloodKeepsFDBBounded floods 100,000 random source MACs from an
// insecure port into a switch with fdb_max 8192: the FDB stops at 8192
// entries, the rest is counted as refused, the live heap grows by less than
// 16 MiB, and the known flow a -> b keeps being switched by unicast to b
// alone throughout.
func TestMACFloodKeepsFDBBounded(t *testing.T) {
	sw, a, _, c, ca, cb := floodRig(t, false)
	known := frame(t, mac(1), mac(2))
	f := frame(t, mac(9), mac(0xee)) // unknown unicast destination: flooded
	before := heapInUse()
	var total runtime.MemStats
	runtime.ReadMemStats(&total)
	allocBefore := total.TotalAlloc
	start := time.Now()
	knownSent := 0
	for i := range floodFrames {
		packet.Ethernet(f).SetSrc(floodMAC(i))
		sw.Input(c, f, packet.Offload{})
		if i%knownEvery == 0 {
			na, nb := ca.n, cb.n
			sw.Input(a, known, packet.Offload{})
			knownSent++
			if ca.n != na || cb.n != nb+1 {
				t.Fatalf("flood frame %d: the known frame a -> b went to a %d times and to b %d times, want 0 and 1", i, ca.n-na, cb.n-nb)
			}
		}
	}
	elapsed := time.Since(start)
	after := heapInUse()
	runtime.ReadMemStats(&total)
	runtime.KeepAlive(sw)

	require.Len(t, sw.Entries(), floodFDBMax, "the FDB holds at fdb_max")
	require.EqualValues(t, floodFrames-(floodFDBMax-2), sw.LearnRefused.Load(), "every MAC beyond fdb_max is refused and counted")
	require.Equal(t, floodFrames, ca.n, "flood frames (unknown unicast) reach a")
	require.Equal(t, floodFrames+knownSent, cb.n, "flood frames and the known flow reach b")
	require.Empty(t, c.Stats.Snapshot().Drops)
	growth := int64(after) - int64(before)
	t.Logf("flood of %d MACs: %v, live heap %+d KiB (bound %d KiB), %d MiB allocated in all",
		floodFrames, elapsed.Round(time.Millisecond), growth>>10, floodHeapMax>>10, (total.TotalAlloc-allocBefore)>>20)
	require.Less(t, growth, int64(floodHeapMax), "live heap growth under the flood")

	// With the table full, the known flow still costs no allocation.
	require.Zero(t, testing.AllocsPerRun(1000, func() { sw.Input(a, known, packet.Offload{}) }))
}

// TestMACFloodFromSecurePortDropped: the same flood from a port with port
// security is dropped whole, learns nothing and delivers nothing.
func TestMACFloodFromSecurePortDropped(t *testing.T) {
	sw, a, _, c, ca, cb := floodRig(t, true)
	known := frame(t, mac(1), mac(2))
	f := udpFrame(t, mac(9), mac(0xee), [4]byte{10, 0, 0, 3}, peerIP, 1000, 2000)
	for i := range floodFrames {
		packet.Ethernet(f).SetSrc(floodMAC(i))
		sw.Input(c, f, packet.Offload{})
		if i%knownEvery == 0 {
			nb := cb.n
			sw.Input(a, known, packet.Offload{})
			require.Equal(t, nb+1, cb.n)
		}
	}
	require.EqualValues(t, floodFrames, c.Stats.Dropped(stats.PortSecurity))
	require.Len(t, sw.Entries(), 2, "nothing learned")
	require.Zero(t, sw.LearnRefused.Load())
	require.Zero(t, ca.n, "nothing of the flood delivered")
	require.Equal(t, floodFrames/knownEvery, cb.n, "only the known flow reached b")
}

// ownLL is the secure port's link-local address (EUI-64 of mac(5)).
const ownLL = "fe80::42:ff:fe00:5"

// qinq is an 802.1ad double-tagged frame whose inner IPv4 source is a
// neighbour's.
func qinq(t *testing.T) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: hw(mac(5)), DstMAC: hw(mac(2)), EthernetType: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 8, Type: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(peerIP[:]), DstIP: net.IP(gwIP[:])},
		gopacket.Payload("x"))
}

// icmp6 is an ICMPv6 message of type typ from src to dst (the Ethernet
// source is the secure port's MAC), with body after the 4-byte header.
func icmp6(t testing.TB, src, dst string, typ uint8, body []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	require.NoError(t, ic.SetNetworkLayerForChecksum(ip))
	if body == nil {
		body = make([]byte, 12)
	}
	return serialize(t, &layers.Ethernet{SrcMAC: hw(mac(5)), DstMAC: hw(packet.MAC{0x33, 0x33, 0, 0, 0, 1}), EthernetType: layers.EthernetTypeIPv6},
		ip, ic, gopacket.Payload(body))
}

// naBody is the body of a neighbour solicitation or advertisement for
// target: 4 bytes of flags, then the address.
func naBody(target string) []byte {
	return append(make([]byte, 4), net.ParseIP(target).To16()...)
}

// raBehindHopByHop hides a router advertisement behind a hop-by-hop
// options header.
func raBehindHopByHop(t testing.TB) []byte {
	f := icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeRouterAdvertisement, nil)
	ip := f[packet.EthernetHeaderLen:]
	hbh := []byte{58, 0, 1, 4, 0, 0, 0, 0} // next: ICMPv6; PadN
	out := append(append(append([]byte(nil), f[:packet.EthernetHeaderLen+40]...), hbh...), ip[40:]...)
	out[packet.EthernetHeaderLen+6] = 0 // hop-by-hop
	out[packet.EthernetHeaderLen+5] += 8
	return out
}

// udp6 is a UDP datagram over IPv6.
func udp6(t *testing.T, src, dst string, sport, dport uint16) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	require.NoError(t, u.SetNetworkLayerForChecksum(ip))
	return serialize(t, &layers.Ethernet{SrcMAC: hw(mac(5)), DstMAC: hw(packet.MAC{0x33, 0x33, 0, 1, 0, 2}), EthernetType: layers.EthernetTypeIPv6},
		ip, u, gopacket.Payload("x"))
}

// ipv6Short is an IPv6 frame cut inside its header.
func ipv6Short(t *testing.T) []byte {
	return icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeEchoRequest, nil)[:packet.EthernetHeaderLen+30]
}

// Frames to the IEEE 802.1D reserved group addresses (STP, LLDP, 802.1X)
// are never forwarded, from any port, secure or not; other multicast is.
func TestLinkLocalGroupNeverForwarded(t *testing.T) {
	for _, secure := range []bool{true, false} {
		for _, last := range []byte{0x00, 0x03, 0x0e, 0x0f} {
			r, p := secureRig(t, secure)
			f := udpFrame(t, mac(5), packet.MAC{0x01, 0x80, 0xc2, 0, 0, last}, secIP, peerIP, 1000, 2000)
			r.sw.Input(p, f, packet.Offload{})
			require.Equal(t, []int{0, 0, 0}, r.delivered(), "01:80:c2:00:00:%02x", last)
			require.EqualValues(t, 1, p.Stats.Dropped(stats.LinkLocalGroup))
		}
		r, p := secureRig(t, secure)
		r.sw.Input(p, udpFrame(t, mac(5), packet.MAC{0x01, 0x80, 0xc2, 0, 0, 0x10}, secIP, peerIP, 1000, 2000), packet.Offload{})
		require.Equal(t, []int{1, 1, 0}, r.delivered(), "01:80:c2:00:00:10 is not reserved")
	}
}

// ndOpt appends a link-layer address option of type typ (1 source, 2
// target) naming m to a neighbour discovery body.
func ndOpt(body []byte, typ byte, m packet.MAC) []byte {
	return append(append(body, typ, 1), m[:]...)
}
