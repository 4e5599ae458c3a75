package router

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/host"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/policy"
	"github.com/uswitch-dev/uswitch/stats"
)

// capture is a router port's egress that keeps copies of what the router
// sent, and the offloads it sent them with.
type capture struct {
	frames [][]byte
	offs   []packet.Offload
}

func (c *capture) WriteFrame(f []byte, off packet.Offload) error {
	c.frames = append(c.frames, append([]byte(nil), f...))
	c.offs = append(c.offs, off)
	return nil
}

func (c *capture) take() [][]byte {
	f := c.frames
	c.frames, c.offs = nil, nil
	return f
}

type rig struct {
	r     *Router
	clk   *clock.Fake
	ports map[string]*Port
	links map[string]*capture
	stats map[string]*stats.Port
}

var (
	frontGW  = netip.MustParsePrefix("172.20.0.1/24")
	backGW   = netip.MustParsePrefix("172.21.0.1/24")
	uplinkIP = netip.MustParsePrefix("10.250.0.2/30")
	hostIP   = netip.MustParseAddr("10.250.0.1")
	webIP    = netip.MustParseAddr("172.20.0.10")
	dbIP     = netip.MustParseAddr("172.21.0.20")
	webMAC   = packet.MAC{0x02, 0x42, 172, 20, 0, 10}
	dbMAC    = packet.MAC{0x02, 0x42, 172, 21, 0, 20}
	hostMAC  = packet.MAC{0x02, 0xaa, 0, 0, 0, 1}
)

func macFor(a netip.Addr) packet.MAC {
	b := a.As4()
	return packet.MAC{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// testPlan is the plan the rig's rules are compiled from.
func testPlan(isolate bool) *config.Plan {
	return &config.Plan{
		Uplink: &config.Uplink{Address: uplinkIP, HostAddress: netip.PrefixFrom(hostIP, 30)},
		Networks: []config.Network{
			{Name: "front", Subnet: frontGW.Masked(), Gateway: frontGW.Addr(), Isolate: isolate, Masquerade: false, MTU: 1500},
			{Name: "back", Subnet: backGW.Masked(), Gateway: backGW.Addr(), Isolate: isolate, MTU: 1500},
		},
	}
}

// tracker compiles plan's rules into a tracker on clk.
func tracker(t testing.TB, plan *config.Plan, clk clock.Clock) *nat.Tracker {
	specs, err := policy.Compile(plan)
	require.NoError(t, err)
	rules, err := nat.NewRules(specs, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return nat.NewTracker(rules, 1000, clk)
}

// newRig: networks front and back (isolated unless told), an uplink with a
// default route to the host; edit changes the plan the rules come from.
func newRig(t *testing.T, isolate bool, mtuBack int, edit ...func(*config.Plan)) *rig {
	t.Helper()
	return buildRig(t, isolate, mtuBack, false, edit...)
}

// buildRig is newRig, with IPv6 on every port when six is true (see
// newRig6).
func buildRig(t *testing.T, isolate bool, mtuBack int, six bool, edit ...func(*config.Plan)) *rig {
	t.Helper()
	g := &rig{clk: &clock.Fake{}, ports: map[string]*Port{}, links: map[string]*capture{}, stats: map[string]*stats.Port{}}
	g.clk.Advance(time.Hour)
	plan := testPlan(isolate)
	for _, e := range edit {
		e(plan)
	}
	g.r = New(g.clk, nil, tracker(t, plan, g.clk))
	g.r.SetHost(host.New(g.r, g.clk))
	add := func(c PortConfig) {
		c.MAC = macFor(c.Addr.Addr())
		if six {
			c.Addr6 = addr6[c.Name]
		}
		g.links[c.Name], g.stats[c.Name] = &capture{}, &stats.Port{}
		p, err := g.r.AddPort(c, g.links[c.Name], g.stats[c.Name])
		require.NoError(t, err)
		g.ports[c.Name] = p
	}
	add(PortConfig{Name: "gw/front", Network: "front", Addr: frontGW, MTU: 1500})
	add(PortConfig{Name: "gw/back", Network: "back", Addr: backGW, MTU: mtuBack})
	add(PortConfig{Name: "uplink", Addr: uplinkIP, MTU: 1500})
	g.r.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), g.ports["uplink"], hostIP)
	if six {
		g.r.AddRoute(netip.MustParsePrefix("::/0"), g.ports["uplink"], host6)
	}
	return g
}

// learn makes the router know a neighbour by an ARP request to its gateway.
func (g *rig) learn(t *testing.T, port string, ip netip.Addr, mac packet.MAC) {
	p := g.ports[port]
	g.ports[port].Input(arpReq(t, mac, ip, p.Addr.Addr()), packet.Offload{})
	g.links[port].take()
}

func arpReq(t testing.TB, smac packet.MAC, sip, tip netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(packet.Broadcast), EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: hw(smac), SourceProtAddress: sip.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: tip.AsSlice()}
	return serialize(t, eth, a)
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), m[:]...)) }

func serialize(t testing.TB, l ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l...))
	return buf.Bytes()
}

type ipOpt func(*layers.IPv4)

func ttl(n uint8) ipOpt  { return func(ip *layers.IPv4) { ip.TTL = n } }
func df(ip *layers.IPv4) { ip.Flags = layers.IPv4DontFragment }

// udpTo builds a UDP frame from (smac, src) to dst, sent to the gateway MAC dmac.
func udpTo(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr, payload int, opts ...ipOpt) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 77, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	for _, o := range opts {
		o(ip)
	}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, udp, gopacket.Payload(make([]byte, payload)))
}

func icmpEcho(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 9, Seq: 1}
	return serialize(t, eth, ip, icmp, gopacket.Payload("ping-payload"))
}

func decode(f []byte) gopacket.Packet {
	return gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
}

// requireChecksumsValid re-serializes the decoded headers with fresh
// checksums (gopacket's, independent of ours) and compares.
func requireChecksumsValid(t *testing.T, f []byte) {
	t.Helper()
	p := decode(f)
	require.Nil(t, p.ErrorLayer())
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	want := ip.Checksum
	fresh := *ip
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, fresh.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}))
	require.Equal(t, want, fresh.Checksum, "IPv4 header checksum")
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		want := u.Checksum
		c := *u
		_ = c.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
		require.Equal(t, want, c.Checksum, "UDP checksum")
	}
	if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		require.Zero(t, packet.Checksum(append(append([]byte{}, ic.Contents...), ic.Payload...), 0), "ICMP checksum")
	}
}

func TestGatewayAnswersARP(t *testing.T) {
	g := newRig(t, true, 1500)
	g.ports["gw/front"].Input(arpReq(t, webMAC, webIP, frontGW.Addr()), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	a := decode(out[0]).Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPReply, a.Operation)
	require.Equal(t, frontGW.Addr().AsSlice(), []byte(a.SourceProtAddress))
	require.Equal(t, hw(macFor(frontGW.Addr())), net.HardwareAddr(a.SourceHwAddress))
	// and nothing for an address the router does not own
	g.ports["gw/front"].Input(arpReq(t, webMAC, webIP, netip.MustParseAddr("172.20.0.99")), packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
}

func TestGatewayAnswersPing(t *testing.T) {
	g := newRig(t, true, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	for _, target := range []netip.Addr{frontGW.Addr(), backGW.Addr(), uplinkIP.Addr()} {
		g.ports["gw/front"].Input(icmpEcho(t, webMAC, macFor(frontGW.Addr()), webIP, target), packet.Offload{})
		out := g.links["gw/front"].take()
		require.Len(t, out, 1, target)
		p := decode(out[0])
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		require.Equal(t, target.AsSlice(), []byte(ip.SrcIP.To4()))
		require.Equal(t, webIP.AsSlice(), []byte(ip.DstIP.To4()))
		ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		require.Equal(t, uint8(layers.ICMPv4TypeEchoReply), ic.TypeCode.Type())
		require.EqualValues(t, 9, ic.Id)
		require.Equal(t, []byte("ping-payload"), ic.Payload)
		require.Equal(t, hw(webMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
		requireChecksumsValid(t, out[0])
	}
}

func TestForwardBetweenOpenNetworks(t *testing.T) {
	g := newRig(t, false, 1500)
	g.learn(t, "gw/back", dbIP, dbMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 100)
	g.ports["gw/front"].Input(in, packet.Offload{})
	out := g.links["gw/back"].take()
	require.Len(t, out, 1)
	p := decode(out[0])
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	require.Equal(t, hw(macFor(backGW.Addr())), eth.SrcMAC)
	require.Equal(t, hw(dbMAC), eth.DstMAC)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.EqualValues(t, 63, ip.TTL)
	requireChecksumsValid(t, out[0])
	require.Empty(t, g.links["gw/front"].take())
}

func TestIsolatedNetworksDoNotForward(t *testing.T) {
	g := newRig(t, true, 1500)
	g.learn(t, "gw/back", dbIP, dbMAC)
	g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10), packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	require.Empty(t, g.links["gw/front"].take(), "dropped silently, like Docker's isolation chains")
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.Isolated))
	// isolated networks still reach the uplink
	g.learn(t, "uplink", hostIP, hostMAC)
	g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, netip.MustParseAddr("10.250.0.1"), 10), packet.Offload{})
	require.Len(t, g.links["uplink"].take(), 1)
}

func TestInternalNetworkHasNoUplink(t *testing.T) {
	g := newRig(t, true, 1500, func(p *config.Plan) { p.Networks[1].Internal = true })
	g.learn(t, "uplink", hostIP, hostMAC)
	g.learn(t, "gw/back", dbIP, dbMAC)
	g.ports["gw/back"].Input(udpTo(t, dbMAC, macFor(backGW.Addr()), dbIP, netip.MustParseAddr("8.8.8.8"), 10), packet.Offload{})
	require.Empty(t, g.links["uplink"].take())
	g.ports["uplink"].Input(udpTo(t, hostMAC, macFor(uplinkIP.Addr()), hostIP, dbIP, 10), packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	require.EqualValues(t, 1, g.stats["uplink"].Dropped(stats.Isolated))
}

func TestUplinkReachesEndpointsWithoutNAT(t *testing.T) {
	g := newRig(t, true, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	g.ports["uplink"].Input(udpTo(t, hostMAC, macFor(uplinkIP.Addr()), hostIP, webIP, 10), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	ip := decode(out[0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, hostIP.AsSlice(), []byte(ip.SrcIP.To4()))
}

func TestARPResolutionQueuesAndReleases(t *testing.T) {
	g := newRig(t, false, 1500)
	g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10), packet.Offload{})
	out := g.links["gw/back"].take()
	require.Len(t, out, 1)
	a := decode(out[0]).Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPRequest, a.Operation)
	require.Equal(t, dbIP.AsSlice(), []byte(a.DstProtAddress))

	// the reply releases the queued packet
	eth := &layers.Ethernet{SrcMAC: hw(dbMAC), DstMAC: hw(macFor(backGW.Addr())), EthernetType: layers.EthernetTypeARP}
	rep := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: hw(dbMAC), SourceProtAddress: dbIP.AsSlice(), DstHwAddress: hw(macFor(backGW.Addr())), DstProtAddress: backGW.Addr().AsSlice()}
	g.ports["gw/back"].Input(serialize(t, eth, rep), packet.Offload{})
	out = g.links["gw/back"].take()
	require.Len(t, out, 1)
	require.Equal(t, hw(dbMAC), decode(out[0]).Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
	requireChecksumsValid(t, out[0])
}

func TestARPFailureSendsHostUnreachable(t *testing.T) {
	g := newRig(t, false, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10)
	g.ports["gw/front"].Input(in, packet.Offload{})
	for range 4 {
		g.clk.Advance(time.Second)
		g.r.Tick()
	}
	require.Len(t, g.links["gw/back"].take(), 3, "three ARP requests")
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	ic := decode(out[0]).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.Equal(t, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeHost), ic.TypeCode)
	require.EqualValues(t, 1, g.stats["gw/back"].Dropped(stats.NeighFailed))
}

// requireICMPError checks an ICMP error: type/code, source, and that it
// quotes the original packet's header (with the TTL it had here).
func requireICMPError(t *testing.T, f []byte, tc layers.ICMPv4TypeCode, from netip.Addr, orig []byte) *layers.ICMPv4 {
	t.Helper()
	requireChecksumsValid(t, f)
	p := decode(f)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, from.AsSlice(), []byte(ip.SrcIP.To4()))
	ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.Equal(t, tc, ic.TypeCode)
	quoted := gopacket.NewPacket(ic.Payload, layers.LayerTypeIPv4, gopacket.Default)
	qip := quoted.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	oip := decode(orig).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, oip.SrcIP, qip.SrcIP)
	require.Equal(t, oip.DstIP, qip.DstIP)
	require.Equal(t, oip.Id, qip.Id)
	require.Equal(t, orig[14:14+28], ic.Payload[:28], "quotes the IP header and the first 8 bytes")
	return ic
}

func TestTTLExceeded(t *testing.T) {
	g := newRig(t, false, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10, ttl(1))
	orig := append([]byte(nil), in...)
	g.ports["gw/front"].Input(in, packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireICMPError(t, out[0], layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, 0), frontGW.Addr(), orig)
	require.EqualValues(t, 1, g.stats["gw/front"].Dropped(stats.TTLExceeded))
}

func TestNoRouteWithoutUplink(t *testing.T) {
	g := &rig{clk: &clock.Fake{}}
	g.r = New(g.clk, nil, tracker(t, &config.Plan{}, g.clk))
	link, st := &capture{}, &stats.Port{}
	p, err := g.r.AddPort(PortConfig{Name: "gw/front", Network: "front", Addr: frontGW, MTU: 1500, MAC: macFor(frontGW.Addr())}, link, st)
	require.NoError(t, err)
	p.Input(arpReq(t, webMAC, webIP, frontGW.Addr()), packet.Offload{})
	link.take()
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, netip.MustParseAddr("8.8.8.8"), 10)
	orig := append([]byte(nil), in...)
	p.Input(in, packet.Offload{})
	out := link.take()
	require.Len(t, out, 1)
	requireICMPError(t, out[0], layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet), frontGW.Addr(), orig)
	require.EqualValues(t, 1, st.Dropped(stats.NoRoute))
}

func TestFragNeededWithDF(t *testing.T) {
	g := newRig(t, false, 1000)
	g.learn(t, "gw/front", webIP, webMAC)
	g.learn(t, "gw/back", dbIP, dbMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 1400, df)
	orig := append([]byte(nil), in...)
	g.ports["gw/front"].Input(in, packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	ic := requireICMPError(t, out[0], layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), frontGW.Addr(), orig)
	require.EqualValues(t, 1000, ic.Seq, "next-hop MTU in the low 16 bits")
}

func TestFragmentsWithoutDF(t *testing.T) {
	g := newRig(t, false, 1000)
	g.learn(t, "gw/back", dbIP, dbMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 2500)
	g.ports["gw/front"].Input(in, packet.Offload{})
	out := g.links["gw/back"].take()
	require.Len(t, out, 3)
	var data []byte
	for i, f := range out {
		requireChecksumsValid(t, f)
		ip := decode(f).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		require.LessOrEqual(t, int(ip.Length), 1000)
		require.EqualValues(t, len(data)/8, ip.FragOffset)
		require.Equal(t, i < 2, ip.Flags&layers.IPv4MoreFragments != 0)
		require.EqualValues(t, 63, ip.TTL)
		data = append(data, f[14+20:]...)
	}
	require.Equal(t, in[14+20:], data, "fragments carry the whole UDP datagram")
}

// The gateway's own ports are the host's (DNAT to host_address, package
// nat), so closed ports are seen at the router's uplink address.
func TestLocalUDPAndTCP(t *testing.T) {
	g := newRig(t, true, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	in := udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, uplinkIP.Addr(), 10)
	orig := append([]byte(nil), in...)
	g.ports["gw/front"].Input(in, packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireICMPError(t, out[0], layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort), frontGW.Addr(), orig)
}

// tcpTo is a TCP segment from (smac, src) to dst by way of dmac, IPv4 or
// IPv6 by the addresses.
func tcpTo(t testing.TB, smac, dmac packet.MAC, src, dst netip.Addr, seg layers.TCP) []byte {
	eth, ip := ipOf(smac, dmac, src, dst, layers.IPProtocolTCP)
	_ = seg.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, &seg)
}

// withDstOpts6 puts an empty destination options header (a PadN) between
// an IPv6 frame's header and its upper-layer header.
func withDstOpts6(f []byte) []byte {
	ip := packet.IPv6(f[packet.EthernetHeaderLen:])
	opts := []byte{ip.NextHeader(), 0, 1, 4, 0, 0, 0, 0}
	ip[6] = packet.ProtoDstOpts6
	ip.SetPayloadLen(ip.PayloadLen() + 8)
	at := packet.EthernetHeaderLen + packet.IPv6HeaderLen
	return append(append(append([]byte(nil), f[:at]...), opts...), f[at:]...)
}

// A TCP segment to a closed port of the router's own addresses is reset,
// as Linux does for both families (RFC 793: RST, ACK acknowledging a
// segment without ACK; a RST with the segment's ack as its sequence
// otherwise); a RST is not answered. (The gateway's own ports are the
// host's through DNAT, package nat: closed ports are seen at the uplink
// address.)
func TestLocalTCPClosedPortReset(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		dstOpts  bool
		seg      layers.TCP
		seq, ack uint32
		rstAck   bool
		noAnswer bool
	}{
		{name: "ipv4 SYN", src: webIP, dst: uplinkIP.Addr(), seg: layers.TCP{Seq: 1000, SYN: true}, ack: 1001, rstAck: true},
		{name: "ipv4 data with ACK", src: webIP, dst: uplinkIP.Addr(), seg: layers.TCP{Seq: 1000, Ack: 7000, ACK: true, PSH: true, BaseLayer: layers.BaseLayer{Payload: []byte("hello")}}, seq: 7000},
		{name: "ipv4 RST", src: webIP, dst: uplinkIP.Addr(), seg: layers.TCP{Seq: 1000, RST: true}, noAnswer: true},
		{name: "ipv6 SYN", src: web6, dst: addr6["uplink"].Addr(), seg: layers.TCP{Seq: 1000, SYN: true}, ack: 1001, rstAck: true},
		{name: "ipv6 FIN", src: web6, dst: addr6["uplink"].Addr(), seg: layers.TCP{Seq: 1000, FIN: true}, ack: 1001, rstAck: true},
		{name: "ipv6 data with ACK", src: web6, dst: addr6["uplink"].Addr(), seg: layers.TCP{Seq: 1000, Ack: 7000, ACK: true}, seq: 7000},
		{name: "ipv6 SYN behind a destination options header", src: web6, dst: addr6["uplink"].Addr(), dstOpts: true, seg: layers.TCP{Seq: 1000, SYN: true}, ack: 1001, rstAck: true},
		{name: "ipv6 to the gateway's link-local address", src: web6, dst: netip.AddrFrom16(gwMAC("gw/front").LinkLocal6()), seg: layers.TCP{Seq: 1000, SYN: true}, ack: 1001, rstAck: true},
		{name: "ipv6 RST", src: web6, dst: addr6["uplink"].Addr(), seg: layers.TCP{Seq: 1000, RST: true}, noAnswer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig6(t, 1500)
			g.learn(t, "gw/front", webIP, webMAC)
			g.learn6(t, "gw/front", web6, webMAC)
			tc.seg.SrcPort, tc.seg.DstPort, tc.seg.Window = 40000, 22, 1000
			in := tcpTo(t, webMAC, gwMAC("gw/front"), tc.src, tc.dst, tc.seg)
			if tc.dstOpts {
				in = withDstOpts6(in)
			}
			g.ports["gw/front"].Input(in, packet.Offload{})
			out := g.links["gw/front"].take()
			if tc.noAnswer {
				require.Empty(t, out)
				return
			}
			require.Len(t, out, 1, "a reset, not an ICMP error")
			p := decode(out[0])
			rst, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			require.True(t, ok, "a TCP segment: %v", p)
			require.True(t, rst.RST)
			require.Equal(t, tc.rstAck, rst.ACK)
			require.Equal(t, tc.seq, rst.Seq)
			require.Equal(t, tc.ack, rst.Ack)
			require.EqualValues(t, 22, rst.SrcPort)
			require.EqualValues(t, 40000, rst.DstPort)
			require.Empty(t, rst.Payload)
			c := *rst
			net := p.NetworkLayer()
			_ = c.SetNetworkLayerForChecksum(net)
			require.NoError(t, c.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}))
			require.Equal(t, rst.Checksum, c.Checksum, "TCP checksum")
			from, to := net.NetworkFlow().Endpoints()
			require.Equal(t, tc.dst.String(), from.String(), "from the address the segment was for")
			require.Equal(t, tc.src.String(), to.String())
			require.Equal(t, hw(webMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC)
		})
	}
}

func TestICMPErrorsRateLimited(t *testing.T) {
	g := newRig(t, false, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	for range 20 {
		g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10, ttl(1)), packet.Offload{})
	}
	require.Len(t, g.links["gw/front"].take(), 6, "burst of 6 per destination")
	g.clk.Advance(time.Second)
	for range 5 {
		g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10, ttl(1)), packet.Offload{})
	}
	require.Len(t, g.links["gw/front"].take(), 1, "then one a second")
	require.EqualValues(t, 25, g.stats["gw/front"].Dropped(stats.TTLExceeded))
}

func TestNoICMPErrorAboutICMPError(t *testing.T) {
	g := newRig(t, false, 1500)
	g.learn(t, "gw/front", webIP, webMAC)
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolICMPv4, SrcIP: webIP.AsSlice(), DstIP: dbIP.AsSlice()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, 3)}
	g.ports["gw/front"].Input(serialize(t, eth, ip, ic, gopacket.Payload(make([]byte, 28))), packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
}

func TestMalformedDroppedAndCounted(t *testing.T) {
	g := newRig(t, false, 1500)
	gw := macFor(frontGW.Addr())
	good := udpTo(t, webMAC, gw, webIP, dbIP, 10)
	badSum := append([]byte(nil), good...)
	badSum[14+10] ^= 0xff
	badLen := append([]byte(nil), good...)
	badLen[14+2], badLen[14+3] = 0xff, 0xff
	badIHL := append([]byte(nil), good...)
	badIHL[14] = 0x44
	martian := udpTo(t, webMAC, gw, netip.MustParseAddr("127.0.0.1"), dbIP, 10)
	cases := []struct {
		name   string
		frame  []byte
		reason stats.Reason
	}{
		{"short ethernet", good[:10], stats.Truncated},
		{"short ip", good[:20], stats.BadIPHeader},
		{"bad total length", badLen, stats.BadIPHeader},
		{"bad ihl", badIHL, stats.BadIPHeader},
		{"bad checksum", badSum, stats.BadChecksum},
		{"martian source", martian, stats.Martian},
		{"short arp", arpReq(t, webMAC, webIP, frontGW.Addr())[:30], stats.BadARP},
	}
	for _, c := range cases {
		before := g.stats["gw/front"].Dropped(c.reason)
		g.ports["gw/front"].Input(c.frame, packet.Offload{})
		require.Equal(t, before+1, g.stats["gw/front"].Dropped(c.reason), c.name)
	}
	for _, l := range g.links {
		require.Empty(t, l.take())
	}
}

func TestRoutes(t *testing.T) {
	g := newRig(t, true, 1500)
	rs := g.r.Routes()
	require.Len(t, rs, 4)
	require.Equal(t, "10.250.0.0/30", rs[0].Prefix.String())
	require.Equal(t, "0.0.0.0/0", rs[3].Prefix.String())
	require.Equal(t, "10.250.0.1", rs[3].Via)
	for _, c := range []struct{ dst, port string }{{"172.20.0.77", "gw/front"}, {"172.21.3.4", "uplink"}, {"172.21.0.4", "gw/back"}, {"1.1.1.1", "uplink"}} {
		p, _, ok := g.r.lay.Load().routes.lookup(netip.MustParseAddr(c.dst).As4())
		require.True(t, ok)
		require.Equal(t, c.port, p.Name, c.dst)
	}
}

type discard struct{}

func (discard) WriteFrame([]byte, packet.Offload) error { return nil }

func routedSetup(t testing.TB) (*Port, []byte) {
	clk := &clock.Fake{}
	r := New(clk, nil, tracker(t, testPlan(false), clk))
	front, _ := r.AddPort(PortConfig{Name: "gw/front", Network: "front", Addr: frontGW, MTU: 1500, MAC: macFor(frontGW.Addr())}, discard{}, &stats.Port{})
	back, _ := r.AddPort(PortConfig{Name: "gw/back", Network: "back", Addr: backGW, MTU: 1500, MAC: macFor(backGW.Addr())}, discard{}, &stats.Port{})
	back.Input(arpReq(t, dbMAC, dbIP, backGW.Addr()), packet.Offload{})
	return front, udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 64, ttl(255))
}

// forwardOnce routes a fresh copy of tmpl: forwarding rewrites the frame in
// place (MACs, TTL), so each round starts from the template.
func forwardOnce(front *Port, f, tmpl []byte) {
	copy(f, tmpl)
	front.Input(f, packet.Offload{})
}

func TestForwardDoesNotAllocate(t *testing.T) {
	for name, setup := range map[string]func(testing.TB) (*Port, []byte){"IPv4": routedSetup, "IPv6": routedSetup6} {
		t.Run(name, func(t *testing.T) {
			front, tmpl := setup(t)
			f := make([]byte, len(tmpl))
			out := &capture{}
			front.r.Ports()[1].link = out
			forwardOnce(front, f, tmpl)
			require.Len(t, out.take(), 1, "the packet was forwarded")
			front.r.Ports()[1].link = discard{}
			require.Zero(t, testing.AllocsPerRun(1000, func() { forwardOnce(front, f, tmpl) }))
		})
	}
}

// BenchmarkRouterForward: one packet routed between two networks (the
// router alone, including a 120-byte copy of the template per round).
func BenchmarkRouterForward(b *testing.B) { benchForward(b, routedSetup) }

// benchForward routes the packet of setup again and again.
func benchForward(b *testing.B, setup func(testing.TB) (*Port, []byte)) {
	front, tmpl := setup(b)
	f := make([]byte, len(tmpl))
	b.ReportAllocs()
	for b.Loop() {
		forwardOnce(front, f, tmpl)
	}
}

func FuzzPortInput(f *testing.F) {
	f.Add(udpTo(f, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10))
	f.Add(icmpEcho(f, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr()))
	f.Add(arpReq(f, webMAC, webIP, frontGW.Addr()))
	f.Fuzz(func(t *testing.T, b []byte) {
		g := newRig(t, false, 1000)
		g.learn(t, "gw/back", dbIP, dbMAC)
		g.ports["gw/front"].Input(b, packet.Offload{})
		g.ports["uplink"].Input(b, packet.Offload{})
		g.r.Tick()
	})
}

// Like Linux (unres_qlen 101), a burst to a neighbour not yet resolved
// waits whole for its ARP reply; beyond 101 packets the oldest go, counted.
func TestNeighbourQueueOverflowCounted(t *testing.T) {
	g := newRig(t, false, 1500)
	for range 10 {
		g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, dbIP, 10), packet.Offload{})
	}
	require.Zero(t, g.stats["gw/back"].Dropped(stats.NeighQueue))
	g.links["gw/back"].take() // the ARP request
	g.ports["gw/back"].Input(arpReq(t, dbMAC, dbIP, backGW.Addr()), packet.Offload{})
	got := 0
	for _, f := range g.links["gw/back"].take() {
		if decode(f).Layer(layers.LayerTypeUDP) != nil {
			got++
		}
	}
	require.Equal(t, 10, got, "a burst of 10 delivers 10")

	other := netip.MustParseAddr("172.21.0.21")
	for range 110 {
		g.ports["gw/front"].Input(udpTo(t, webMAC, macFor(frontGW.Addr()), webIP, other, 10), packet.Offload{})
	}
	require.EqualValues(t, 9, g.stats["gw/back"].Dropped(stats.NeighQueue), "101 wait for ARP, the oldest 9 went")
}
