package datapath

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/capture"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	vswitch "github.com/uswitch-dev/uswitch/switch"
	"github.com/uswitch-dev/uswitch/tap"
)

func mac4(a netip.Addr) packet.MAC {
	b := a.As4()
	return packet.MAC{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

func iface(port, network, ip string, bits int) config.Interface {
	a := netip.MustParseAddr(ip)
	gw := a.As4()
	gw[3] = 1
	return config.Interface{Name: "eth0", Port: port, Network: network, IP: a, Prefix: netip.PrefixFrom(a, bits), MAC: mac4(a), Gateway: netip.AddrFrom4(gw), MTU: 1500}
}

func network(name, subnet string, isolate bool) config.Network {
	s := netip.MustParsePrefix(subnet)
	gw := s.Addr().Next()
	return config.Network{Name: name, Subnet: s, Gateway: gw, GatewayMAC: mac4(gw), Isolate: isolate, MTU: 1500, Masquerade: true}
}

// testPlan: networks front and back, web and web2 on front, db on back, an
// uplink.
func testPlan(isolate bool) *config.Plan {
	return &config.Plan{
		Name:     "t",
		Defaults: config.Defaults{FDBAgeing: clock.Duration(300 * time.Second), FDBMax: 100, PortSecurity: true},
		Uplink: &config.Uplink{Address: netip.MustParsePrefix("10.250.0.2/30"), HostAddress: netip.MustParsePrefix("10.250.0.1/30"),
			MAC: mac4(netip.MustParseAddr("10.250.0.2"))},
		Networks: []config.Network{network("front", "172.20.0.0/24", isolate), network("back", "172.21.0.0/24", isolate)},
		Endpoints: []config.Endpoint{
			{Name: "web", Mode: "bridge", PortSecurity: true, Interfaces: []config.Interface{iface("web", "front", "172.20.0.10", 24)}},
			{Name: "web2", Mode: "bridge", PortSecurity: true, Interfaces: []config.Interface{iface("web2", "front", "172.20.0.11", 24)}},
			{Name: "db", Mode: "bridge", PortSecurity: true, Interfaces: []config.Interface{iface("db", "back", "172.21.0.20", 24)}},
		},
	}
}

type topo struct {
	dp   *Datapath
	mems map[string]*tap.Mem
}

func start(t *testing.T, plan *config.Plan) *topo {
	t.Helper()
	dp, err := New(plan, &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tp := &topo{dp: dp, mems: map[string]*tap.Mem{}}
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			m := tap.NewMem(64)
			tp.mems[ifc.Port] = m
			require.NoError(t, dp.AttachEndpoint(ifc.Port, m))
		}
	}
	if plan.Uplink != nil {
		tp.mems["uplink"] = tap.NewMem(64)
		require.NoError(t, dp.AttachUplink(tp.mems["uplink"]))
	}
	t.Cleanup(func() { dp.Close() })
	return tp
}

func ser(t testing.TB, l ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l...))
	return buf.Bytes()
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func arpRequest(t testing.TB, smac packet.MAC, sip, tip string) []byte {
	return ser(t, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(packet.Broadcast), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: hw(smac), SourceProtAddress: netip.MustParseAddr(sip).AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: netip.MustParseAddr(tip).AsSlice()})
}

func arpReply(t testing.TB, smac packet.MAC, sip string, dmac packet.MAC, dip string) []byte {
	return ser(t, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPReply,
			SourceHwAddress: hw(smac), SourceProtAddress: netip.MustParseAddr(sip).AsSlice(), DstHwAddress: hw(dmac), DstProtAddress: netip.MustParseAddr(dip).AsSlice()})
}

func udp(t testing.TB, smac, dmac packet.MAC, src, dst string, ttl uint8) []byte {
	ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	u := &layers.UDP{SrcPort: 1111, DstPort: 2222}
	_ = u.SetNetworkLayerForChecksum(ip)
	return ser(t, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("data"))
}

// recv waits for the next frame on a port and decodes it.
func (tp *topo) recv(t *testing.T, port string) gopacket.Packet {
	t.Helper()
	f := tp.mems[port].Recv(2 * time.Second)
	require.NotNil(t, f, "nothing arrived on %s", port)
	return gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
}

// resolveGateway: the endpoint ARPs for its gateway and gets the answer.
func (tp *topo) resolveGateway(t *testing.T, port string, mac packet.MAC, ip, gw string) {
	t.Helper()
	tp.mems[port].Inject(arpRequest(t, mac, ip, gw))
	a := tp.recv(t, port).Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPReply, a.Operation)
}

var (
	webMAC = mac4(netip.MustParseAddr("172.20.0.10"))
	dbMAC  = mac4(netip.MustParseAddr("172.21.0.20"))
	frontG = mac4(netip.MustParseAddr("172.20.0.1"))
	backG  = mac4(netip.MustParseAddr("172.21.0.1"))
)

func TestRoutedThroughBothSwitches(t *testing.T) {
	tp := start(t, testPlan(false))
	tp.resolveGateway(t, "web", webMAC, "172.20.0.10", "172.20.0.1")
	// the ARP request was flooded to web2 as well
	require.NotNil(t, tp.mems["web2"].Recv(time.Second))

	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64))
	// the router asks for db on back
	p := tp.recv(t, "db")
	a := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPRequest, a.Operation)
	tp.mems["db"].Inject(arpReply(t, dbMAC, "172.21.0.20", backG, "172.21.0.1"))
	p = tp.recv(t, "db")
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.EqualValues(t, 63, ip.TTL)
	require.Equal(t, hw(backG), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC)
	require.Equal(t, []byte("data"), p.ApplicationLayer().Payload())

	// nothing leaked to web2 or the uplink
	require.Nil(t, tp.mems["web2"].Recv(100*time.Millisecond))
	require.Nil(t, tp.mems["uplink"].Recv(10*time.Millisecond))

	// the gateway MAC is a static FDB entry on the gateway's switch port
	var found bool
	for _, e := range tp.dp.Network("front").Entries() {
		if e.MAC == frontG {
			found = e.Static && e.Port == "gw/front"
		}
	}
	require.True(t, found)
}

func TestIsolatedNetworksDrop(t *testing.T) {
	tp := start(t, testPlan(true))
	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64))
	require.Nil(t, tp.mems["db"].Recv(200*time.Millisecond))
	require.Eventually(t, func() bool {
		for _, p := range tp.dp.Ports() {
			if p.Name == "gw/front" {
				return p.Drops["isolated"] == 1
			}
		}
		return false
	}, time.Second, 10*time.Millisecond)
}

func TestUplinkToEndpoint(t *testing.T) {
	tp := start(t, testPlan(true))
	hostMAC := packet.MAC{0x02, 0xaa, 0, 0, 0, 1}
	upMAC := mac4(netip.MustParseAddr("10.250.0.2"))
	tp.resolveGateway(t, "uplink", hostMAC, "10.250.0.1", "10.250.0.2")
	tp.mems["uplink"].Inject(udp(t, hostMAC, upMAC, "10.250.0.1", "172.20.0.10", 64))
	// ARP for web on front (flooded to web and web2), then the packet
	a := tp.recv(t, "web").Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPRequest, a.Operation)
	tp.mems["web"].Inject(arpReply(t, webMAC, "172.20.0.10", frontG, "172.20.0.1"))
	ip := tp.recv(t, "web").Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, "10.250.0.1", ip.SrcIP.String(), "no NAT from the host side")
	ports := tp.dp.Ports()
	require.Equal(t, "uplink", ports[len(ports)-1].Name)
	require.EqualValues(t, 2, ports[len(ports)-1].RxPackets)
}

type discard struct{}

func (discard) WriteFrame([]byte, packet.Offload) error { return nil }

// routedSetup wires the plan with silent devices and teaches both sides
// their neighbours, for the zero-allocation test and the benchmark of the
// whole routed path: switch front -> router -> switch back.
func routedSetup(t testing.TB) (*vswitch.Switch, *vswitch.Port, *vswitch.Port, []byte) {
	dp, err := New(testPlan(false), &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	front, back := dp.Network("front"), dp.Network("back")
	web, err := front.AddPort(vswitch.PortConfig{Name: "web", Secure: true, MAC: webMAC, IP: [4]byte{172, 20, 0, 10}}, discard{})
	require.NoError(t, err)
	db, err := back.AddPort(vswitch.PortConfig{Name: "db"}, discard{})
	require.NoError(t, err)
	front.Input(web, arpRequest(t, webMAC, "172.20.0.10", "172.20.0.1"), packet.Offload{})
	back.Input(db, arpRequest(t, dbMAC, "172.21.0.20", "172.21.0.1"), packet.Offload{})
	return front, web, db, udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64)
}

func TestRoutedPathDoesNotAllocate(t *testing.T) {
	for name, setup := range map[string]func(testing.TB) (*vswitch.Switch, *vswitch.Port, *vswitch.Port, []byte){"IPv4": routedSetup, "IPv6": routedSetup6} {
		t.Run(name, func(t *testing.T) {
			sw, in, out, tmpl := setup(t)
			f := make([]byte, len(tmpl))
			require.Zero(t, testing.AllocsPerRun(1000, func() { copy(f, tmpl); sw.Input(in, f, packet.Offload{}) }))
			// 1001 runs (AllocsPerRun warms up once) and the gateway's
			// answer (ARP reply, neighbour advertisement)
			require.EqualValues(t, 1002, out.Stats.TxPackets.Load(), "every frame reached db")
		})
	}
}

// BenchmarkRoutedPath: one frame from an endpoint through its switch, the
// router and the other network's switch to the far endpoint (includes
// copying the 60-byte template frame, since routing rewrites it).
func BenchmarkRoutedPath(b *testing.B) { benchRouted(b, routedSetup) }

// benchRouted sends setup's frame through the routed path again and again.
func benchRouted(b *testing.B, setup func(testing.TB) (*vswitch.Switch, *vswitch.Port, *vswitch.Port, []byte)) {
	sw, in, _, tmpl := setup(b)
	f := make([]byte, len(tmpl))
	b.ReportAllocs()
	for b.Loop() {
		copy(f, tmpl)
		sw.Input(in, f, packet.Offload{})
	}
}

// TestUplinkIsAnOrdinaryPort: the uplink's TAP is port rule.Uplink of the
// uplink's switch, the router's port on it gw/uplink: the switch counts
// and captures its frames both ways as for any port, and it is detached
// and attached again like one.
func TestUplinkIsAnOrdinaryPort(t *testing.T) {
	tp := start(t, testPlan(false))
	s, err := tp.dp.Capture().Subscribe(capture.Filter{Port: rule.Uplink, Count: 2})
	require.NoError(t, err)
	defer s.Close()
	req := arpRequest(t, hostMAC, "10.250.0.1", "10.250.0.2")
	tp.send(t, rule.Uplink, req)
	reply := tp.mems[rule.Uplink].Recv(time.Second)
	require.NotNil(t, reply, "the router answered through the uplink's switch")
	a := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPReply, a.Operation)

	ports := map[string]PortInfo{}
	for _, p := range tp.dp.Ports() {
		ports[p.Name] = p
	}
	up, gw := ports[rule.Uplink], ports["gw/"+rule.Uplink]
	require.Empty(t, up.Network, "the uplink is on no network")
	require.EqualValues(t, 1, up.RxPackets)
	require.EqualValues(t, 1, up.TxPackets)
	require.EqualValues(t, len(req), up.RxBytes)
	require.EqualValues(t, 1, gw.TxPackets, "the switch delivered the request to the router's port")
	require.EqualValues(t, 1, gw.RxPackets, "and took the reply from it")

	// Both directions captured on the port, as for any port.
	var buf bytes.Buffer
	require.NoError(t, s.WritePcap(context.Background(), &buf))
	r, err := pcapgo.NewReader(&buf)
	require.NoError(t, err)
	for _, want := range [][]byte{req, reply} {
		got, _, err := r.ReadPacketData()
		require.NoError(t, err)
		require.Equal(t, want, got)
	}

	// Detached and attached again like any port.
	require.NoError(t, tp.dp.Detach(rule.Uplink))
	_, err = tp.dp.Trace(TraceQuery{Port: rule.Uplink, Dst: "10.250.0.2"})
	require.ErrorContains(t, err, `no port "uplink"`, "nothing to trace from while detached")
	m := tap.NewMem(64)
	require.NoError(t, tp.dp.AttachUplink(m))
	require.Error(t, tp.dp.AttachUplink(tap.NewMem(64)), "one uplink")
	tp.mems[rule.Uplink] = m
	tp.send(t, rule.Uplink, req)
	require.NotNil(t, m.Recv(time.Second), "answered through the new device")
}
