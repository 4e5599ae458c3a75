package datapath

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

var (
	web6 = netip.MustParseAddr("fd00:20::10").As16()
	db6  = netip.MustParseAddr("fd00:21::20").As16()
)

// routedSetup6 is routedSetup for IPv6: front and back dual-stack
// (fd00:20::/64, fd00:21::/64), web (port security on) and db known to
// the router by their solicitations of the gateways, and a UDP frame from
// web to db with the same 4-byte payload as routedSetup's.
func routedSetup6(t testing.TB) (*vswitch.Switch, *vswitch.Port, *vswitch.Port, []byte) {
	plan := dualPlan()
	dp, err := New(plan, &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	front, back := dp.Network("front"), dp.Network("back")
	web, err := front.AddPort(vswitch.PortConfig{Name: "web", Secure: true, MAC: webMAC, IP: [4]byte{172, 20, 0, 10}, IP6: web6}, discard{})
	require.NoError(t, err)
	db, err := back.AddPort(vswitch.PortConfig{Name: "db"}, discard{})
	require.NoError(t, err)
	for _, s := range []struct {
		sw   *vswitch.Switch
		p    *vswitch.Port
		mac  packet.MAC
		ip   [16]byte
		net6 netip.Prefix
	}{{front, web, webMAC, web6, plan.Networks[0].Subnet6}, {back, db, dbMAC, db6, plan.Networks[1].Subnet6}} {
		gw := s.net6.Addr().Next().As16()
		group := packet.SolicitedNode(gw)
		s.sw.Input(s.p, packet.PutNS(make([]byte, packet.NDPFrameLen), packet.MulticastMAC6(group), s.mac, s.ip, group, gw), packet.Offload{})
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: web6[:], DstIP: db6[:]}
	u := &layers.UDP{SrcPort: 1111, DstPort: 2222}
	_ = u.SetNetworkLayerForChecksum(ip)
	return front, web, db, ser(t, &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(frontG), EthernetType: layers.EthernetTypeIPv6}, ip, u, gopacket.Payload("data"))
}

// BenchmarkRoutedPath6 is BenchmarkRoutedPath for IPv6.
func BenchmarkRoutedPath6(b *testing.B) { benchRouted(b, routedSetup6) }

// dualPlan is testPlan with IPv6: front and back masqueraded (as a ULA
// subnet6 is by default), web and db, and the uplink.
func dualPlan() *config.Plan {
	plan := testPlan(false)
	for i, s := range []string{"fd00:20::/64", "fd00:21::/64"} {
		plan.Networks[i].Subnet6 = netip.MustParsePrefix(s)
		plan.Networks[i].Gateway6 = plan.Networks[i].Subnet6.Addr().Next()
	}
	plan.Uplink.Address6, plan.Uplink.HostAddress6 = netip.MustParsePrefix("fd00:ff::2/64"), netip.MustParsePrefix("fd00:ff::1/64")
	for i := range plan.Networks {
		plan.Networks[i].Masquerade6 = true // a ULA subnet6's default
	}
	for i, a := range map[int][16]byte{0: web6, 2: db6} {
		ifc := &plan.Endpoints[i].Interfaces[0]
		n := plan.Network(ifc.Network)
		ifc.IP6, ifc.Prefix6, ifc.Gateway6 = netip.AddrFrom16(a), netip.PrefixFrom(netip.AddrFrom16(a), 64), n.Gateway6
	}
	return plan
}

// isolated makes plan's networks isolated.
func isolated(plan *config.Plan) *config.Plan {
	for i := range plan.Networks {
		plan.Networks[i].Isolate = true
	}
	return plan
}

// solicit has the endpoint at port (mac, ip) solicit its gateway6, which
// learns it.
func solicit(t *testing.T, tp *topo, port string, mac packet.MAC, ip [16]byte, gw netip.Addr) {
	g := gw.As16()
	group := packet.SolicitedNode(g)
	tp.send(t, port, packet.PutNS(make([]byte, packet.NDPFrameLen), packet.MulticastMAC6(group), mac, ip, group, g))
}

func hostNS(t *testing.T, tp *topo) {
	solicit(t, tp, rule.Uplink, hostMAC, netip.MustParseAddr("fd00:ff::1").As16(), netip.MustParseAddr("fd00:ff::2"))
}

func webNS(t *testing.T, tp *topo) {
	solicit(t, tp, "web", webMAC, web6, netip.MustParseAddr("fd00:20::1"))
}
func dbNS(t *testing.T, tp *topo) {
	solicit(t, tp, "db", dbMAC, db6, netip.MustParseAddr("fd00:21::1"))
}

// isNS reports whether frame is a neighbour solicitation.
func isNS(frame []byte) bool {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	return packet.Ethernet(frame).EtherType() == packet.EtherTypeIPv6 && ip.LenValid() &&
		ip.NextHeader() == packet.ProtoICMPv6 && packet.ICMPv6(ip.Payload()).Type() == packet.ICMPv6NeighSolicit
}

// The gateway answers web's solicitation on a running datapath, learns
// web's IPv6 address, and forgets it with web's port.
func TestDetachForgetsIPv6Neighbour(t *testing.T) {
	plan := dualPlan()
	tp := start(t, plan)
	gw := plan.Networks[0].Gateway6.As16()
	group := packet.SolicitedNode(gw)
	tp.mems["web"].Inject(packet.PutNS(make([]byte, packet.NDPFrameLen), packet.MulticastMAC6(group), webMAC, web6, group, gw))
	var na *layers.ICMPv6NeighborAdvertisement
	for na == nil {
		p := tp.recv(t, "web")
		na, _ = p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	}
	require.Equal(t, gw[:], []byte(na.TargetAddress))
	front := tp.dp.Router().Ports()[0]
	require.Equal(t, "gw/front", front.Name)
	require.Len(t, front.Neighbours6().Entries(), 1)
	require.NoError(t, tp.dp.Detach("web"))
	require.Empty(t, front.Neighbours6().Entries())
}
