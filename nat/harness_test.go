package nat

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/policy"
	"github.com/uswitch-dev/uswitch/rule"
)

// The test topology: front (masquerade, isolated) with web, which publishes
// 8080:80/tcp and 5353:53/udp, and web2; back (isolated, no masquerade)
// with db; secure (internal) with vault; the uplink 10.250.0.2/30 whose host
// side is 10.250.0.1; remote is somewhere beyond the host.
var (
	uplinkAddr = netip.MustParseAddr("10.250.0.2")
	hostAddr   = netip.MustParseAddr("10.250.0.1")
	remoteAddr = netip.MustParseAddr("198.51.100.7")
	frontGW    = netip.MustParseAddr("172.20.0.1")
	backGW     = netip.MustParseAddr("172.21.0.1")
	secureGW   = netip.MustParseAddr("172.22.0.1")
	webAddr    = netip.MustParseAddr("172.20.0.10")
	web2Addr   = netip.MustParseAddr("172.20.0.11")
	dbAddr     = netip.MustParseAddr("172.21.0.20")
	vaultAddr  = netip.MustParseAddr("172.22.0.30")
)

// UplinkName is the uplink's name (rule.Uplink), short for the tests.
const UplinkName = rule.Uplink

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// testPlan is the resolved plan of the topology above.
func testPlan() *config.Plan {
	iface := func(net string, ip, gw netip.Addr) []config.Interface {
		return []config.Interface{{Name: "eth0", Network: net, IP: ip, Gateway: gw}}
	}
	return &config.Plan{
		Name:     "t",
		Defaults: config.Defaults{ConntrackMax: 1000},
		Uplink: &config.Uplink{Address: netip.PrefixFrom(uplinkAddr, 30), HostAddress: netip.PrefixFrom(hostAddr, 30),
			Routes: true},
		Networks: []config.Network{
			{Name: "front", Subnet: netip.MustParsePrefix("172.20.0.0/24"), Gateway: frontGW, Masquerade: true, Isolate: true, MTU: 1500},
			{Name: "back", Subnet: netip.MustParsePrefix("172.21.0.0/24"), Gateway: backGW, Isolate: true, MTU: 1500},
			{Name: "secure", Subnet: netip.MustParsePrefix("172.22.0.0/24"), Gateway: secureGW, Masquerade: true, Internal: true, Isolate: true, MTU: 1500},
		},
		Endpoints: []config.Endpoint{
			{Name: "web", Mode: config.ModeBridge, Interfaces: iface("front", webAddr, frontGW), Publish: []config.Publish{
				{HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
				{HostPort: 5353, ContainerPort: 53, Proto: "udp"},
			}},
			{Name: "web2", Mode: config.ModeBridge, Interfaces: iface("front", web2Addr, frontGW)},
			{Name: "db", Mode: config.ModeBridge, Interfaces: iface("back", dbAddr, backGW)},
			{Name: "vault", Mode: config.ModeBridge, Interfaces: iface("secure", vaultAddr, secureGW)},
		},
	}
}

// rig is a tracker over a plan's rules on a fake clock, with the router's
// view of the topology: which port each address is behind and the port
// addresses.
type rig struct {
	t     testing.TB
	clk   *clock.Fake
	plan  *config.Plan
	tr    *Tracker
	addrs map[string]netip.Addr // iface -> the router's address there
}

func newRig(t testing.TB, edit ...func(*config.Plan)) *rig {
	t.Helper()
	p := testPlan()
	for _, e := range edit {
		e(p)
	}
	rules, err := compilePlan(p, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	g := &rig{t: t, clk: &clock.Fake{}, plan: p, addrs: map[string]netip.Addr{UplinkName: uplinkAddr}}
	g.clk.Advance(time.Hour) // nothing special about time zero
	g.tr = NewTracker(rules, p.Defaults.ConntrackMax, g.clk)
	for _, n := range p.Networks {
		g.addrs[n.Name] = n.Gateway
	}
	return g
}

// route is the router's decision for a destination of either family: the
// egress iface, or "" for one of its own addresses.
func (g *rig) route(dst netip.Addr) string {
	if dst == g.plan.Uplink.Address6.Addr() {
		return ""
	}
	for _, own := range g.addrs {
		if own == dst {
			return ""
		}
	}
	for _, n := range g.plan.Networks {
		if n.Gateway6 == dst {
			return ""
		}
		if n.Subnet.Contains(dst) || n.Subnet6.Contains(dst) {
			return n.Name
		}
	}
	return UplinkName // the default route, via the host
}

// result is what the hooks made of a packet.
type result struct {
	v   Verdict
	out string // egress iface; "" when delivered to the router itself
	ip  []byte // the packet as it leaves (rewritten in place)
}

// pass runs a packet of either family that arrives on iface in through
// the hooks as the router does (run), the packet checked valid first.
func (g *rig) pass(in string, pkt []byte) result {
	g.t.Helper()
	six := pkt[0]>>4 == 6
	require.True(g.t, six && packet.IPv6(pkt).LenValid() || !six && packet.IPv4(pkt).Valid())
	r := result{ip: pkt}
	r.v, r.out = g.run(in, pkt)
	return r
}

// run runs a valid packet of either family that arrives on iface in
// through the hooks exactly as the router does: prerouting, then input for
// the router's own addresses (out "") or forward and postrouting with the
// egress iface out and its address.
func (g *rig) run(in string, pkt []byte) (v Verdict, out string) {
	six := pkt[0]>>4 == 6
	var f Flow
	var dst netip.Addr
	if six {
		v, dst = g.tr.Prerouting6(&f, pkt, in), netip.AddrFrom16(packet.IPv6(pkt).Dst())
	} else {
		v, dst = g.tr.Prerouting(&f, pkt, in), netip.AddrFrom4(packet.IPv4(pkt).Dst())
	}
	if v.Action != Accept {
		return v, ""
	}
	if out = g.route(dst); out == "" {
		return g.tr.Filter(&f, Input, ""), out
	}
	if v = g.tr.Filter(&f, Forward, out); v.Action != Accept {
		return v, out
	}
	if six {
		return g.tr.Postrouting6(&f, pkt, out, g.addr6(out)), out
	}
	return g.tr.Postrouting(&f, pkt, out, g.addrs[out].As4()), out
}

// forward passes an IPv4 packet that must be forwarded out of out and
// returns it with its checksums verified; forward6 does it for IPv6.
func (g *rig) forward(in, out string, pkt []byte) packet.IPv4 {
	return packet.IPv4(g.forwarded(in, out, pkt))
}

func (g *rig) forward6(in, out string, pkt []byte) packet.IPv6 {
	return packet.IPv6(g.forwarded(in, out, pkt))
}

func (g *rig) forwarded(in, out string, pkt []byte) []byte {
	g.t.Helper()
	r := g.pass(in, pkt)
	require.Equal(g.t, accept, r.v, "verdict")
	require.Equal(g.t, out, r.out, "egress")
	if pkt[0]>>4 == 6 {
		requireChecksums6(g.t, r.ip)
	} else {
		requireChecksums(g.t, r.ip)
	}
	return r.ip
}

// --- packets, built with gopacket -----------------------------------------

func serialize(t testing.TB, l ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l...))
	return append([]byte(nil), buf.Bytes()...)
}

func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 4242, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// TCP flags for tcpPkt.
const (
	fSYN = 1 << iota
	fACK
	fFIN
	fRST
	fPSH
)

// ipFor is the IP header from src to dst, of their family.
func ipFor(src, dst netip.Addr, proto layers.IPProtocol) interface {
	gopacket.NetworkLayer
	gopacket.SerializableLayer
} {
	if src.Is6() {
		return ip6Layer(src, dst, proto)
	}
	return ipLayer(src, dst, proto)
}

// tcpPkt is a TCP segment of either family, by the addresses.
func tcpPkt(t testing.TB, src, dst netip.AddrPort, flags int, payload string) []byte {
	ip := ipFor(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1000, Window: 65535,
		SYN: flags&fSYN != 0, ACK: flags&fACK != 0, FIN: flags&fFIN != 0, RST: flags&fRST != 0, PSH: flags&fPSH != 0}
	if tcp.ACK {
		tcp.Ack = 2000
	}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(payload))
}

// udpPkt is a UDP datagram of either family, by the addresses.
func udpPkt(t testing.TB, src, dst netip.AddrPort, payload string) []byte {
	ip := ipFor(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, gopacket.Payload(payload))
}

// udpNoSum is a UDP packet sent without a checksum (0).
func udpNoSum(t testing.TB, src, dst netip.AddrPort, payload string) []byte {
	b := udpPkt(t, src, dst, payload)
	b[20+6], b[20+7] = 0, 0
	return b
}

// ping is an ICMP or ICMPv6 echo request (or reply), by the addresses.
func ping(t testing.TB, src, dst netip.Addr, id, seq uint16, reply bool) []byte {
	if src.Is6() {
		typ := uint8(layers.ICMPv6TypeEchoRequest)
		if reply {
			typ = layers.ICMPv6TypeEchoReply
		}
		ip := ip6Layer(src, dst, layers.IPProtocolICMPv6)
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		_ = icmp.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, icmp, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, gopacket.Payload("ping-payload"))
	}
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return serialize(t, ipLayer(src, dst, layers.IPProtocolICMPv4), icmp, gopacket.Payload("ping-payload"))
}

// icmpError is the ICMP error from src to dst quoting the whole of quoted
// (small packets are quoted whole, as routers and hosts do).
func icmpError(t testing.TB, src, dst netip.Addr, typ, code uint8, mtu uint16, quoted []byte) []byte {
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	if typ == layers.ICMPv4TypeDestinationUnreachable && code == layers.ICMPv4CodeFragmentationNeeded {
		icmp.Seq = mtu // the next-hop MTU is the low half of the rest of the header
	}
	ip := ipLayer(src, dst, layers.IPProtocolICMPv4)
	ip.Flags = 0
	return serialize(t, ip, icmp, gopacket.Payload(quoted))
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// --- decoding and checksum verification, independent of package packet ----

type decoded struct {
	ip   *layers.IPv4
	tcp  *layers.TCP
	udp  *layers.UDP
	icmp *layers.ICMPv4
}

// decodeIP decodes an IPv4 packet down to its transport header (what the
// payload holds is none of NAT's business).
func decodeIP(t testing.TB, b []byte) decoded {
	t.Helper()
	var (
		ip   layers.IPv4
		tcp  layers.TCP
		udp  layers.UDP
		icmp layers.ICMPv4
		pl   gopacket.Payload
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &ip, &tcp, &udp, &icmp, &pl)
	p.IgnoreUnsupported = true
	var got []gopacket.LayerType
	require.NoError(t, p.DecodeLayers(b, &got), "decodes")
	d := decoded{ip: &ip}
	for _, l := range got {
		switch l {
		case layers.LayerTypeTCP:
			d.tcp = &tcp
		case layers.LayerTypeUDP:
			d.udp = &udp
		case layers.LayerTypeICMPv4:
			d.icmp = &icmp
		}
	}
	return d
}

// ends are the packet's source and destination: addresses and ports (the
// echo id for ICMP).
func (d decoded) ends() (src, dst netip.AddrPort) {
	s, _ := netip.AddrFromSlice(d.ip.SrcIP.To4())
	a, _ := netip.AddrFromSlice(d.ip.DstIP.To4())
	switch {
	case d.tcp != nil:
		return ap(s, uint16(d.tcp.SrcPort)), ap(a, uint16(d.tcp.DstPort))
	case d.udp != nil:
		return ap(s, uint16(d.udp.SrcPort)), ap(a, uint16(d.udp.DstPort))
	case d.icmp != nil:
		return ap(s, d.icmp.Id), ap(a, d.icmp.Id)
	}
	return ap(s, 0), ap(a, 0)
}

func (d decoded) src() netip.AddrPort { s, _ := d.ends(); return s }

func (d decoded) dst() netip.AddrPort { _, a := d.ends(); return a }

// requireChecksums verifies every checksum of an IPv4 packet by having
// gopacket recompute it: the IP header, TCP or UDP over the pseudo header
// (a UDP checksum 0 means none and is accepted as such), ICMP over the
// message, and, for an ICMP error quoting a whole packet, the quoted IP
// header and transport checksums too.
func requireChecksums(t testing.TB, b []byte) {
	t.Helper()
	d := decodeIP(t, b)
	requireIPSum(t, d.ip)
	switch {
	case d.tcp != nil:
		c := *d.tcp
		_ = c.SetNetworkLayerForChecksum(d.ip)
		require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(),
			gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(d.tcp.Payload)))
		require.Equal(t, d.tcp.Checksum, c.Checksum, "TCP checksum")
	case d.udp != nil:
		requireUDPSum(t, d.ip, d.udp)
	case d.icmp != nil:
		msg := append(clone(d.icmp.Contents), d.icmp.Payload...)
		require.Zero(t, packet.Checksum(msg, 0), "ICMP checksum")
		c := *d.icmp
		require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(),
			gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(d.icmp.Payload)))
		require.Equal(t, d.icmp.Checksum, c.Checksum, "ICMP checksum (gopacket)")
		if (packet.ICMP(msg)).IsError() && len(d.icmp.Payload) >= 20 {
			inner := d.icmp.Payload
			if tl := int(packet.IPv4(inner).TotalLen()); tl == len(inner) {
				requireChecksums(t, inner) // quoted whole: everything verifies
			} else {
				var q layers.IPv4 // a partial quote: its header, at least
				require.NoError(t, q.DecodeFromBytes(inner, gopacket.NilDecodeFeedback))
				requireIPSum(t, &q)
			}
		}
	}
}

func requireIPSum(t testing.TB, ip *layers.IPv4) {
	t.Helper()
	c := *ip
	require.NoError(t, c.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}))
	require.Equal(t, ip.Checksum, c.Checksum, "IPv4 header checksum")
}

func requireUDPSum(t testing.TB, ip *layers.IPv4, u *layers.UDP) {
	t.Helper()
	if u.Checksum == 0 {
		return // sent without a checksum
	}
	c := *u
	_ = c.SetNetworkLayerForChecksum(ip)
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(),
		gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	want := c.Checksum
	if want == 0 {
		want = 0xffff // RFC 768: a computed 0 is sent as all ones (gopacket leaves it 0)
	}
	require.Equal(t, want, u.Checksum, "UDP checksum")
}

// requireFlow checks the addresses and ports (the echo id for ICMP and
// ICMPv6) of a packet of either family.
func requireFlow(t testing.TB, b []byte, src, dst netip.AddrPort) {
	t.Helper()
	var s, d netip.AddrPort
	if b[0]>>4 == 6 {
		s, d = decodeIP6(t, b).ends()
	} else {
		s, d = decodeIP(t, b).ends()
	}
	require.Equal(t, src, s, "source")
	require.Equal(t, dst, d, "destination")
}

// entry returns the one connection whose original tuple has this source.
func (g *rig) entry(src netip.AddrPort) Entry {
	g.t.Helper()
	for _, e := range g.tr.Table.Entries() {
		if e.Orig.Src == src.Addr() && e.Orig.Sport == src.Port() {
			return e
		}
	}
	require.FailNow(g.t, "no connection from "+src.String())
	return Entry{}
}

// row returns the rule whose comment is comment (the first, in evaluation
// order).
func (g *rig) row(comment string) rule.Listed {
	g.t.Helper()
	for _, r := range g.tr.Rules.List() {
		if r.Comment == comment {
			return r
		}
	}
	require.FailNow(g.t, "no rule "+comment)
	return rule.Listed{}
}

// compilePlan is what the datapath evaluates for p: Docker's policy
// compiled into nat's rules.
func compilePlan(p *config.Plan, log *slog.Logger) (*Rules, error) {
	specs, err := policy.Compile(p)
	if err != nil {
		return nil, err
	}
	return NewRules(specs, log)
}

// dump is rs as iptables-save lines, in evaluation order.
func dump(rs *Rules) string {
	var b strings.Builder
	for _, r := range rs.List() {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}
