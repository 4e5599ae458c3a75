package ndp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

type recorder struct {
	sent        []gopacket.Packet
	released    [][]byte
	releasedTo  []packet.MAC
	unreachable [][]byte
}

func (r *recorder) WriteFrame(f []byte, _ packet.Offload) error {
	r.sent = append(r.sent, gopacket.NewPacket(append([]byte(nil), f...), layers.LayerTypeEthernet, gopacket.Default))
	return nil
}
func (r *recorder) Release(f []byte, _ packet.Offload, m packet.MAC) {
	r.released = append(r.released, f)
	r.releasedTo = append(r.releasedTo, m)
}
func (r *recorder) Unreachable(f []byte, _ packet.Offload) { r.unreachable = append(r.unreachable, f) }

// link is what a cache sends to r.
func (r *recorder) link() neigh.Link {
	return neigh.Link{Wire: r, Release: r.Release, Unreachable: r.Unreachable}
}

var (
	gwMAC  = packet.MAC{0x02, 0x42, 10, 0, 0, 1}
	gwIP   = netip.MustParseAddr("fd00:20::1").As16()
	hostM  = packet.MAC{0x02, 0x42, 10, 0, 0, 5}
	hostIP = netip.MustParseAddr("fd00:20::5").As16()
)

func newCache() (*Cache, *recorder, *clock.Fake) {
	r := &recorder{}
	clk := &clock.Fake{}
	clk.Advance(time.Hour)
	return New(neigh.Config{}, gwMAC, gwIP, clk, r.link()), r, clk
}

// nd builds a neighbour solicitation or advertisement with gopacket and
// returns its IPv6 packet and the message.
func nd(t *testing.T, typ uint8, hop uint8, src, dst, target [16]byte, flags uint8, opt layers.ICMPv6Opt, optMAC packet.MAC) (packet.IPv6, packet.NDP) {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolICMPv6, SrcIP: src[:], DstIP: dst[:]}
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	require.NoError(t, m.SetNetworkLayerForChecksum(ip))
	var opts layers.ICMPv6Options
	if opt != 0 {
		opts = layers.ICMPv6Options{{Type: opt, Data: optMAC[:]}}
	}
	var body gopacket.SerializableLayer
	if typ == layers.ICMPv6TypeNeighborSolicitation {
		body = &layers.ICMPv6NeighborSolicitation{TargetAddress: net.IP(target[:]), Options: opts}
	} else {
		body = &layers.ICMPv6NeighborAdvertisement{Flags: flags, TargetAddress: net.IP(target[:]), Options: opts}
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, m, body))
	b := packet.IPv6(buf.Bytes())
	return b, packet.NDP(b.Payload())
}

// checkSum has gopacket recompute an ICMPv6 checksum and compares.
func checkSum(t *testing.T, p gopacket.Packet) {
	t.Helper()
	m := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	c := *m
	require.NoError(t, c.SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(m.Payload)))
	require.Equal(t, m.Checksum, c.Checksum)
}

func TestAnswersSolicitationForOwnAddresses(t *testing.T) {
	for _, target := range [][16]byte{gwIP, gwMAC.LinkLocal6()} {
		c, r, _ := newCache()
		ip, m := nd(t, layers.ICMPv6TypeNeighborSolicitation, 255, hostIP, packet.SolicitedNode(target), target, 0, layers.ICMPv6OptSourceAddress, hostM)
		_, ok := c.Input(ip, m, hostM)
		require.True(t, ok)
		require.Len(t, r.sent, 1)
		p := r.sent[0]
		checkSum(t, p)
		require.Equal(t, net.HardwareAddr(hostM[:]), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
		v6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		require.EqualValues(t, 255, v6.HopLimit)
		require.Equal(t, net.IP(hostIP[:]), v6.DstIP)
		require.Equal(t, net.IP(target[:]), v6.SrcIP)
		na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		require.True(t, na.Solicited() && na.Router() && na.Override())
		require.Equal(t, net.IP(target[:]), na.TargetAddress)
		require.Equal(t, []byte(gwMAC[:]), []byte(na.Options[0].Data))
		mac, ok := c.Lookup(hostIP)
		require.True(t, ok, "the solicitor is learned")
		require.Equal(t, hostM, mac)
	}
}

func TestSolicitationForOthersIgnored(t *testing.T) {
	c, r, _ := newCache()
	other := netip.MustParseAddr("fd00:20::9").As16()
	ip, m := nd(t, layers.ICMPv6TypeNeighborSolicitation, 255, hostIP, packet.SolicitedNode(other), other, 0, layers.ICMPv6OptSourceAddress, hostM)
	_, ok := c.Input(ip, m, hostM)
	require.True(t, ok)
	require.Empty(t, r.sent)
	require.Empty(t, c.Entries())
}

func TestDuplicateAddressDetectionDefended(t *testing.T) {
	c, r, _ := newCache()
	ip, m := nd(t, layers.ICMPv6TypeNeighborSolicitation, 255, [16]byte{}, packet.SolicitedNode(gwIP), gwIP, 0, 0, packet.MAC{})
	_, ok := c.Input(ip, m, hostM)
	require.True(t, ok)
	require.Len(t, r.sent, 1)
	checkSum(t, r.sent[0])
	v6 := r.sent[0].Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.Equal(t, "ff02::1", v6.DstIP.String())
	na := r.sent[0].Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	require.False(t, na.Solicited(), "an answer to :: is not solicited (RFC 4861 7.2.4)")
	require.Empty(t, c.Entries())
}

// RFC 4861 7.1: a hop limit other than 255 (the message crossed a
// router), a bad checksum, options that do not parse are dropped.
func TestInvalidMessagesDropped(t *testing.T) {
	c, r, _ := newCache()
	ip, m := nd(t, layers.ICMPv6TypeNeighborSolicitation, 254, hostIP, packet.SolicitedNode(gwIP), gwIP, 0, layers.ICMPv6OptSourceAddress, hostM)
	reason, ok := c.Input(ip, m, hostM)
	require.False(t, ok)
	require.Equal(t, stats.BadND, reason)

	ip, m = nd(t, layers.ICMPv6TypeNeighborSolicitation, 255, hostIP, packet.SolicitedNode(gwIP), gwIP, 0, layers.ICMPv6OptSourceAddress, hostM)
	m[8] ^= 1
	reason, ok = c.Input(ip, m, hostM)
	require.False(t, ok)
	require.Equal(t, stats.BadChecksum, reason)

	ip, m = nd(t, layers.ICMPv6TypeNeighborAdvertisement, 255, hostIP, gwIP, hostIP, 0xe0, layers.ICMPv6OptTargetAddress, hostM)
	m[packet.NDPLen+1] = 0 // option length 0
	m[2], m[3] = 0, 0
	packet.ICMPv6(m).SetChecksum(ip.Src(), ip.Dst())
	reason, ok = c.Input(ip, m, hostM)
	require.False(t, ok)
	require.Equal(t, stats.BadND, reason)
	require.Empty(t, r.sent)
	require.Empty(t, c.Entries())
}

func TestResolveSolicitsThenReleasesOnAdvert(t *testing.T) {
	c, r, _ := newCache()
	c.Resolve(hostIP, []byte("pkt1"), packet.Offload{})
	c.Resolve(hostIP, []byte("pkt2"), packet.Offload{})
	require.Len(t, r.sent, 1, "one solicitation for two queued packets")
	p := r.sent[0]
	checkSum(t, p)
	require.Equal(t, "33:33:ff:00:00:05", p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC.String())
	v6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	require.Equal(t, "ff02::1:ff00:5", v6.DstIP.String())
	require.Equal(t, net.IP(gwIP[:]), v6.SrcIP)
	ns := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	require.Equal(t, net.IP(hostIP[:]), ns.TargetAddress)
	require.Equal(t, neigh.Incomplete, c.Entries()[0].State)
	require.Equal(t, 2, c.Entries()[0].Queue)

	ip, m := nd(t, layers.ICMPv6TypeNeighborAdvertisement, 255, hostIP, gwIP, hostIP, 0x60, layers.ICMPv6OptTargetAddress, hostM)
	_, ok := c.Input(ip, m, hostM)
	require.True(t, ok)
	require.Equal(t, [][]byte{[]byte("pkt1"), []byte("pkt2")}, r.released)
	require.Equal(t, []packet.MAC{hostM, hostM}, r.releasedTo)
	require.Equal(t, neigh.Reachable, c.Entries()[0].State)
	require.Equal(t, "fd00:20::5", c.Entries()[0].IP)
}

func TestUnsolicitedAdvertCreatesNothing(t *testing.T) {
	c, _, _ := newCache()
	ip, m := nd(t, layers.ICMPv6TypeNeighborAdvertisement, 255, hostIP, packet.AllNodes6, hostIP, 0x20, layers.ICMPv6OptTargetAddress, hostM)
	_, ok := c.Input(ip, m, hostM)
	require.True(t, ok)
	require.Empty(t, c.Entries())
}

func TestLookupDoesNotAllocate(t *testing.T) {
	c, _, _ := newCache()
	c.Learn(hostIP, hostM, true)
	require.Zero(t, testing.AllocsPerRun(1000, func() { c.Lookup(hostIP) }))
}

// The entry Lookup found last is tried first; a forgotten one is never
// found again, and another address gets its own MAC.
func TestLookupLastEntry(t *testing.T) {
	c, _, _ := newCache()
	other := netip.MustParseAddr("fd00:20::6").As16()
	otherM := packet.MAC{0x02, 0x42, 10, 0, 0, 6}
	c.Learn(hostIP, hostM, true)
	c.Learn(other, otherM, true)
	for range 3 {
		m, ok := c.Lookup(hostIP)
		require.True(t, ok)
		require.Equal(t, hostM, m)
		m, ok = c.Lookup(other)
		require.True(t, ok)
		require.Equal(t, otherM, m)
	}
	c.Forget(other)
	_, ok := c.Lookup(other)
	require.False(t, ok, "forgotten, though it was the last found")
	m, ok := c.Lookup(hostIP)
	require.True(t, ok)
	require.Equal(t, hostM, m)
}
