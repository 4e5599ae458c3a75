package host_test

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
	"github.com/uswitch-dev/uswitch/router"
	"github.com/uswitch-dev/uswitch/stats"
)

// The host stage's tests run it behind a real router, as datapath wires
// it, so that what they see is what leaves the gateway's port.

// capture is a router port's egress that keeps copies of what it was sent.
type capture struct{ frames [][]byte }

func (c *capture) WriteFrame(f []byte, off packet.Offload) error {
	c.frames = append(c.frames, append([]byte(nil), f...))
	return nil
}

func (c *capture) take() [][]byte {
	f := c.frames
	c.frames = nil
	return f
}

type rig struct {
	r     *router.Router
	host  *host.Stage
	clk   *clock.Fake
	ports map[string]*router.Port
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
)

func macFor(a netip.Addr) packet.MAC {
	b := a.As4()
	return packet.MAC{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// testPlan: networks front and back, isolated or not, and an uplink.
func testPlan(isolate bool) *config.Plan {
	return &config.Plan{
		Uplink: &config.Uplink{Address: uplinkIP, HostAddress: netip.PrefixFrom(hostIP, 30)},
		Networks: []config.Network{
			{Name: "front", Subnet: frontGW.Masked(), Gateway: frontGW.Addr(), Isolate: isolate, MTU: 1500},
			{Name: "back", Subnet: backGW.Masked(), Gateway: backGW.Addr(), Isolate: isolate, MTU: 1500},
		},
	}
}

// newRig: a router with ports gw/front, gw/back and uplink, the rules of
// plan, and its host stage with no services.
func newRig(t *testing.T, plan *config.Plan) *rig {
	t.Helper()
	g := &rig{clk: &clock.Fake{}, ports: map[string]*router.Port{}, links: map[string]*capture{}, stats: map[string]*stats.Port{}}
	g.clk.Advance(time.Hour)
	specs, err := policy.Compile(plan)
	require.NoError(t, err)
	rules, err := nat.NewRules(specs, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	g.r = router.New(g.clk, nil, nat.NewTracker(rules, 1000, g.clk))
	g.host = host.New(g.r, g.clk)
	g.r.SetHost(g.host)
	add := func(c router.PortConfig) {
		c.MAC = macFor(c.Addr.Addr())
		g.links[c.Name], g.stats[c.Name] = &capture{}, &stats.Port{}
		p, err := g.r.AddPort(c, g.links[c.Name], g.stats[c.Name])
		require.NoError(t, err)
		g.ports[c.Name] = p
	}
	add(router.PortConfig{Name: "gw/front", Network: "front", Addr: frontGW, MTU: 1500})
	add(router.PortConfig{Name: "gw/back", Network: "back", Addr: backGW, MTU: 1500})
	add(router.PortConfig{Name: "uplink", Addr: uplinkIP, MTU: 1500})
	g.r.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), g.ports["uplink"], hostIP)
	return g
}

// learn makes the router know a neighbour by an ARP request to its gateway.
func (g *rig) learn(t *testing.T, port string, ip netip.Addr, mac packet.MAC) {
	p := g.ports[port]
	eth := &layers.Ethernet{SrcMAC: hw(mac), DstMAC: hw(packet.Broadcast), EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: hw(mac), SourceProtAddress: ip.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: p.Addr.Addr().AsSlice()}
	p.Input(serialize(t, eth, a), packet.Offload{})
	g.links[port].take()
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), m[:]...)) }

func serialize(t testing.TB, l ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l...))
	return buf.Bytes()
}

func decode(f []byte) gopacket.Packet {
	return gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
}

// requireChecksumsValid recomputes the IPv4 and UDP checksums with
// gopacket and compares.
func requireChecksumsValid(t *testing.T, f []byte) {
	t.Helper()
	p := decode(f)
	require.Nil(t, p.ErrorLayer())
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	fresh := *ip
	require.NoError(t, fresh.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}))
	require.Equal(t, ip.Checksum, fresh.Checksum, "IPv4 header checksum")
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		c := *u
		_ = c.SetNetworkLayerForChecksum(ip)
		require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
		require.Equal(t, u.Checksum, c.Checksum, "UDP checksum")
	}
}

// requireICMPError checks an ICMP error's type and code, its source, and
// that it quotes the original packet's header.
func requireICMPError(t *testing.T, f []byte, tc layers.ICMPv4TypeCode, from netip.Addr, orig []byte) {
	t.Helper()
	requireChecksumsValid(t, f)
	p := decode(f)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, from.AsSlice(), []byte(ip.SrcIP.To4()))
	ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.Equal(t, tc, ic.TypeCode)
	require.Zero(t, packet.Checksum(append(append([]byte{}, ic.Contents...), ic.Payload...), 0), "ICMP checksum")
	require.Equal(t, orig[14:14+28], ic.Payload[:28], "quotes the IP header and the first 8 bytes")
}
