package trace

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

func frameOf(t testing.TB, proto, src, dst string, sport, dport uint16) []byte {
	t.Helper()
	f, err := Packet{SrcMAC: packet.MAC{2, 0, 0, 0, 0, 1}, DstMAC: packet.MAC{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Sport: sport, Dport: dport, SYN: true}.Build()
	require.NoError(t, err)
	return f
}

func TestFilter(t *testing.T) {
	tcp := frameOf(t, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80)
	icmp := frameOf(t, "icmp", "10.0.0.2", "192.168.1.1", 7, 0)
	arp := packet.PutARP(make([]byte, packet.ARPFrameLen), 1, packet.Broadcast, packet.MAC{2, 0, 0, 0, 0, 1}, [4]byte{10, 0, 0, 2}, packet.MAC{}, [4]byte{10, 0, 0, 1})
	for _, c := range []struct {
		expr           string
		tcp, icmp, arp bool
	}{
		{"", true, true, true},
		{"tcp", true, false, false},
		{"proto icmp", false, true, false},
		{"arp", false, false, true},
		{"host 10.1.0.3", true, false, false},
		{"host 10.0.0.2", true, true, true},
		{"net 192.168.0.0/16", false, true, false},
		{"port 80", true, false, false},
		{"tcp and port 40000 and host 10.0.0.2", true, false, false},
		{"udp and host 10.0.0.2", false, false, false},
	} {
		f, err := ParseFilter(c.expr)
		require.NoError(t, err, c.expr)
		require.Equal(t, c.tcp, f.Match(tcp), "%q tcp", c.expr)
		require.Equal(t, c.icmp, f.Match(icmp), "%q icmp", c.expr)
		require.Equal(t, c.arp, f.Match(arp), "%q arp", c.expr)
	}
	for _, bad := range []string{"host", "host x", "host fe80::1%eth0", "net 10.0.0.1", "net fd00::1", "proto ip6", "port 70000", "proto gre", "or tcp", "tcp and", "foo"} {
		_, err := ParseFilter(bad)
		require.Error(t, err, bad)
	}
}

func TestLiveRateAndBound(t *testing.T) {
	l := NewLive("web", "front", Filter{}, 5)
	f := frameOf(t, "udp", "10.0.0.2", "10.0.0.3", 1, 2)
	require.False(t, l.Wants("front", "api", f), "another port")
	require.False(t, l.Wants("back", "web", f), "another network")
	n := 0
	for range 20 {
		if l.Wants("front", "web", f) {
			n++
		}
	}
	require.Equal(t, 5, n, "the burst is the rate")
	require.EqualValues(t, 15, l.Missed.Load())
	time.Sleep(250 * time.Millisecond)
	require.True(t, l.Wants("front", "web", f), "tokens come back")

	// Done never blocks: a full channel loses the event
	for range cap(l.Events) + 3 {
		l.Done("front", "web", &Recorder{})
	}
	require.Len(t, l.Events, cap(l.Events))
	require.EqualValues(t, 18, l.Missed.Load())
}

// frame6 builds an IPv6 frame with gopacket from src to dst carrying l4
// (TCP, UDP or ICMPv6) after the extension headers exts, each a layer
// whose next header is set here.
func frame6(t testing.TB, src, dst string, l4 gopacket.SerializableLayer, exts ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	var next layers.IPProtocol
	switch x := l4.(type) {
	case *layers.TCP:
		next = layers.IPProtocolTCP
		require.NoError(t, x.SetNetworkLayerForChecksum(ip))
	case *layers.UDP:
		next = layers.IPProtocolUDP
		require.NoError(t, x.SetNetworkLayerForChecksum(ip))
	case *layers.ICMPv6:
		next = layers.IPProtocolICMPv6
		require.NoError(t, x.SetNetworkLayerForChecksum(ip))
	case gopacket.Payload: // the rest of a fragment
		next = layers.IPProtocolTCP
	}
	ls := []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv6},
		ip,
	}
	// each header's next header is what follows it
	for i := len(exts) - 1; i >= 0; i-- {
		switch x := exts[i].(type) {
		case *layers.IPv6HopByHop:
			x.NextHeader, next = next, layers.IPProtocolIPv6HopByHop
		case *fragHdr:
			x.NextHeader, next = uint8(next), layers.IPProtocolIPv6Fragment
		}
	}
	ip.NextHeader = next
	ls = append(append(ls, exts...), l4)
	if _, ok := l4.(gopacket.Payload); !ok {
		ls = append(ls, gopacket.Payload("data"))
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	p := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer(), "gopacket reads back what it built")
	return buf.Bytes()
}

// fragHdr is a fragment header as a gopacket layer, written by
// packet.IPv6Fragment.Encode: gopacket does not serialize one.
type fragHdr packet.IPv6FragmentFields

func (h *fragHdr) LayerType() gopacket.LayerType { return layers.LayerTypeIPv6Fragment }

func (h *fragHdr) SerializeTo(b gopacket.SerializeBuffer, _ gopacket.SerializeOptions) error {
	f, err := b.PrependBytes(packet.IPv6FragmentLen)
	if err != nil {
		return err
	}
	packet.IPv6Fragment(f).Encode((*packet.IPv6FragmentFields)(h))
	return nil
}

func hopByHop() *layers.IPv6HopByHop {
	h := &layers.IPv6HopByHop{}
	h.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}} // PadN: 8 bytes in all
	return h
}

// TestFilter6: every term works on IPv6 frames, through extension headers,
// and a filter of one family never matches the other's frames.
func TestFilter6(t *testing.T) {
	const a, b = "fd00:20::10", "fd00:21::20"
	frames := map[string][]byte{
		"tcp":    frame6(t, a, b, &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1000}),
		"udp":    frame6(t, a, b, &layers.UDP{SrcPort: 40001, DstPort: 7000}),
		"icmp6":  frame6(t, a, "fe80::1", &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}),
		"hbhudp": frame6(t, a, b, &layers.UDP{SrcPort: 40001, DstPort: 7000}, hopByHop()),
		// a first fragment has its ports, a later one only its protocol
		"frag0": frame6(t, a, b, &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true}, &fragHdr{More: true, ID: 7}),
		"frag1": frame6(t, a, b, gopacket.Payload("later bytes of the segment"), hopByHop(), &fragHdr{Offset: 32, ID: 7}),
		"tcp4":  frameOf(t, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80),
		"icmp4": frameOf(t, "icmp", "10.0.0.2", "192.168.1.1", 7, 0),
	}
	all := []string{"tcp", "udp", "icmp6", "hbhudp", "frag0", "frag1", "tcp4", "icmp4"}
	for _, c := range []struct {
		expr string
		want []string
	}{
		{"", all},
		{"tcp", []string{"tcp", "frag0", "frag1", "tcp4"}},
		{"proto tcp", []string{"tcp", "frag0", "frag1", "tcp4"}},
		{"udp", []string{"udp", "hbhudp"}},
		{"icmp", []string{"icmp4"}},
		{"icmp6", []string{"icmp6"}},
		{"proto icmp6", []string{"icmp6"}},
		{"ip6", []string{"tcp", "udp", "icmp6", "hbhudp", "frag0", "frag1"}},
		{"ip", []string{"tcp4", "icmp4"}},
		{"ip6 and tcp", []string{"tcp", "frag0", "frag1"}},
		{"port 80", []string{"tcp", "frag0", "tcp4"}},
		{"port 40000", []string{"tcp", "frag0", "tcp4"}},
		{"port 7000", []string{"udp", "hbhudp"}},
		{"udp and port 40001", []string{"udp", "hbhudp"}},
		{"host " + b, []string{"tcp", "udp", "hbhudp", "frag0", "frag1"}},
		{"host fe80::1", []string{"icmp6"}},
		{"host " + a, []string{"tcp", "udp", "icmp6", "hbhudp", "frag0", "frag1"}},
		{"host FD00:20:0::10", []string{"tcp", "udp", "icmp6", "hbhudp", "frag0", "frag1"}},
		{"net fd00:21::/32", []string{"tcp", "udp", "hbhudp", "frag0", "frag1"}},
		{"net fe80::/10", []string{"icmp6"}},
		{"net ::/0", []string{"tcp", "udp", "icmp6", "hbhudp", "frag0", "frag1"}},
		{"net 0.0.0.0/0", []string{"tcp4", "icmp4"}},
		{"host 10.0.0.2", []string{"tcp4", "icmp4"}},
		{"host ::ffff:10.0.0.2", nil}, // an IPv6 address: not the IPv4 frames'
		{"tcp and port 80 and net fd00::/16", []string{"tcp", "frag0"}},
		{"icmp6 and port 80", nil},
		{"arp", nil},
	} {
		f, err := ParseFilter(c.expr)
		require.NoError(t, err, c.expr)
		var got []string
		for _, name := range all {
			if f.Match(frames[name]) {
				got = append(got, name)
			}
		}
		require.Equal(t, c.want, got, "%q", c.expr)
	}

	// cut short: the extension headers do not fit (addresses still match),
	// or the fixed header does not (nothing matches)
	cut := slices.Clone(frames["hbhudp"])
	cut = cut[:packet.EthernetHeaderLen+packet.IPv6HeaderLen+4]
	packet.IPv6(cut[packet.EthernetHeaderLen:]).SetPayloadLen(4)
	for expr, want := range map[string]bool{"host " + a: true, "ip6": true, "udp": false, "port 7000": false} {
		f, err := ParseFilter(expr)
		require.NoError(t, err)
		require.Equal(t, want, f.Match(cut), "%q on cut extension headers", expr)
		require.False(t, f.Match(frames["tcp"][:packet.EthernetHeaderLen+packet.IPv6HeaderLen-1]), "%q on a cut header", expr)
	}
}

// TestFilterIPv4Fragments: like IPv6, a first IPv4 fragment has its ports,
// a later one only its protocol.
func TestFilterIPv4Fragments(t *testing.T) {
	first := frameOf(t, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80)
	packet.IPv4(first[packet.EthernetHeaderLen:]).SetFlagsOffset(packet.IPv4MoreFragments)
	later := slices.Clone(first)
	packet.IPv4(later[packet.EthernetHeaderLen:]).SetFlagsOffset(3)
	for expr, want := range map[string][2]bool{"port 80": {true, false}, "tcp": {true, true}, "host 10.1.0.3": {true, true}} {
		f, err := ParseFilter(expr)
		require.NoError(t, err)
		require.Equal(t, want, [2]bool{f.Match(first), f.Match(later)}, "%q", expr)
	}
}

// Match runs for every frame while a live trace runs: no allocation, on
// either family, through extension headers.
func TestMatchDoesNotAllocate(t *testing.T) {
	f4 := frameOf(t, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80)
	f6 := frame6(t, "fd00::1", "fd00::2", &layers.UDP{SrcPort: 1, DstPort: 7000}, hopByHop())
	for _, expr := range []string{"tcp and port 80 and host 10.1.0.3", "ip6 and udp and port 7000 and net fd00::/64", "host fd00::2", "icmp6"} {
		f, err := ParseFilter(expr)
		require.NoError(t, err)
		require.Zero(t, testing.AllocsPerRun(100, func() { f.Match(f4); f.Match(f6) }), expr)
	}
	f, err := ParseFilter("ip6 and udp and port 7000 and net fd00::/64")
	require.NoError(t, err)
	require.True(t, f.Match(f6), "the measured path is the matching one")
}

// FuzzMatch: any frame, for filters of every term, never panics.
func FuzzMatch(f *testing.F) {
	f.Add(frame6(f, "fd00::1", "fd00::2", &layers.UDP{SrcPort: 1, DstPort: 7000}, hopByHop()))
	f.Add(frame6(f, "fd00::1", "fd00::2", gopacket.Payload("xxxxxxxx"), &fragHdr{Offset: 8}))
	f.Add(frameOf(f, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80))
	var filters []Filter
	for _, expr := range []string{"tcp and port 80", "udp and net fd00::/8", "icmp6 and host fd00::2", "ip and icmp", "ip6", "arp and host 10.0.0.1"} {
		flt, err := ParseFilter(expr)
		require.NoError(f, err)
		filters = append(filters, flt)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, flt := range filters {
			flt.Match(frame)
		}
	})
}
