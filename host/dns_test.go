package host_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/dns"
	"github.com/uswitch-dev/uswitch/host"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// dnsPlan: web (alias www) on front, db on back; back has no DNS unless
// backDNS.
func dnsPlan(backDNS bool) *config.Plan {
	p := testPlan(true)
	p.Networks[0].DNS = true
	p.Networks[1].DNS = backDNS
	p.Endpoints = []config.Endpoint{
		{Name: "web", Mode: config.ModeBridge, Aliases: []string{"www"}, Interfaces: []config.Interface{{Network: "front", IP: webIP}}},
		{Name: "db", Mode: config.ModeBridge, Interfaces: []config.Interface{{Network: "back", IP: dbIP}}},
	}
	return p
}

func dnsQuery(t testing.TB, name string) []byte {
	m := new(miekg.Msg)
	m.SetQuestion(miekg.Fqdn(name), miekg.TypeA)
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

// udpFrame builds a UDP frame from (smac, src:sport) to dst:dport, sent to
// the gateway MAC dmac.
func udpFrame(t testing.TB, smac, dmac [6]byte, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 77, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, udp, gopacket.Payload(payload))
}

func TestDNSQueryToGatewayIsAnswered(t *testing.T) {
	plan := dnsPlan(false)
	g := newRig(t, plan)
	dns.New(plan, nil, nil).Register(g.host)
	g.learn(t, "gw/front", webIP, webMAC)
	q := dnsQuery(t, "www")
	g.ports["gw/front"].Input(udpFrame(t, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr(), 40001, 53, q), packet.Offload{})
	out := g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireChecksumsValid(t, out[0])
	p := decode(out[0])
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	require.Equal(t, hw(webMAC), eth.DstMAC)
	require.Equal(t, hw(macFor(frontGW.Addr())), eth.SrcMAC)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, frontGW.Addr().AsSlice(), []byte(ip.SrcIP.To4()))
	require.Equal(t, webIP.AsSlice(), []byte(ip.DstIP.To4()))
	require.EqualValues(t, host.TTL, ip.TTL)
	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	require.EqualValues(t, 53, u.SrcPort)
	require.EqualValues(t, 40001, u.DstPort)
	require.NotZero(t, u.Checksum)
	m := new(miekg.Msg)
	require.NoError(t, m.Unpack(u.Payload))
	require.Equal(t, miekg.RcodeSuccess, m.Rcode)
	require.Len(t, m.Answer, 1)
	require.Equal(t, webIP.String(), m.Answer[0].(*miekg.A).A.String())
	require.EqualValues(t, dns.TTL, m.Answer[0].Header().Ttl)

	// The other network's name is unknown here.
	g.ports["gw/front"].Input(udpFrame(t, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr(), 40002, 53, dnsQuery(t, "db")), packet.Offload{})
	out = g.links["gw/front"].take()
	require.Len(t, out, 1)
	requireChecksumsValid(t, out[0])
	m = new(miekg.Msg)
	require.NoError(t, m.Unpack(decode(out[0]).Layer(layers.LayerTypeUDP).(*layers.UDP).Payload))
	require.Equal(t, miekg.RcodeNameError, m.Rcode)
}

func TestDNSOnlyAtTheIngressGatewayOfADNSNetwork(t *testing.T) {
	portUnreach := layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)
	for _, c := range []struct {
		name     string
		resolver bool
		uplink   bool
		port     string
		src      netip.Addr
		smac     [6]byte
		dst      netip.Addr
	}{
		{"no resolver", false, true, "gw/front", webIP, webMAC, frontGW.Addr()},
		// (with an uplink, the port is the host's: TestDNSPortOfANetworkWithoutDNS)
		{"network without DNS", true, false, "gw/back", dbIP, dbMAC, backGW.Addr()},
		{"another network's gateway", true, true, "gw/front", webIP, webMAC, backGW.Addr()},
		{"the uplink address", true, true, "gw/front", webIP, webMAC, uplinkIP.Addr()},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := dnsPlan(false)
			if !c.uplink {
				plan.Uplink = nil
			}
			g := newRig(t, plan)
			if c.resolver {
				dns.New(plan, nil, nil).Register(g.host)
			}
			p := g.ports[c.port]
			g.learn(t, c.port, c.src, c.smac)
			in := udpFrame(t, c.smac, p.MAC, c.src, c.dst, 40000, 53, dnsQuery(t, "web"))
			orig := append([]byte(nil), in...)
			p.Input(in, packet.Offload{})
			out := g.links[c.port].take()
			require.Len(t, out, 1)
			requireICMPError(t, out[0], portUnreach, p.Addr.Addr(), orig)
		})
	}
}

// On a network without the embedded DNS, port 53 of the gateway is the
// host's, as every other port: the query leaves the uplink for
// host_address:53 from the uplink address.
func TestDNSPortOfANetworkWithoutDNS(t *testing.T) {
	plan := dnsPlan(false)
	g := newRig(t, plan)
	dns.New(plan, nil, nil).Register(g.host)
	g.learn(t, "gw/back", dbIP, dbMAC)
	g.learn(t, "uplink", hostIP, macFor(hostIP))
	g.ports["gw/back"].Input(udpFrame(t, dbMAC, macFor(backGW.Addr()), dbIP, backGW.Addr(), 40000, 53, dnsQuery(t, "web")), packet.Offload{})
	require.Empty(t, g.links["gw/back"].take())
	out := g.links["uplink"].take()
	require.Len(t, out, 1)
	requireChecksumsValid(t, out[0])
	p := decode(out[0])
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, uplinkIP.Addr().AsSlice(), []byte(ip.SrcIP.To4()))
	require.Equal(t, hostIP.AsSlice(), []byte(ip.DstIP.To4()))
	require.EqualValues(t, 53, p.Layer(layers.LayerTypeUDP).(*layers.UDP).DstPort)
}

func TestDNSBadUDPLengthDropped(t *testing.T) {
	plan := dnsPlan(false)
	g := newRig(t, plan)
	dns.New(plan, nil, nil).Register(g.host)
	g.learn(t, "gw/front", webIP, webMAC)
	f := udpFrame(t, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr(), 40000, 53, dnsQuery(t, "web"))
	f[14+20+4], f[14+20+5] = 0xff, 0xff // UDP length beyond the packet
	g.ports["gw/front"].Input(f, packet.Offload{})
	require.Empty(t, g.links["gw/front"].take())
	require.EqualValues(t, 1, g.stats["gw/front"].Snapshot().Drops[stats.Truncated.String()])
}

// laterResolver replies from another goroutine after ServeUDP returned, as
// a forwarded query does, with a payload of n bytes.
type laterResolver struct {
	n  int
	wg sync.WaitGroup
}

func (l *laterResolver) ServeUDP(in host.Ingress, src [4]byte, sport uint16, payload []byte, reply func([]byte)) bool {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		b := make([]byte, l.n)
		for i := range b {
			b[i] = byte(i)
		}
		reply(b)
	}()
	return true
}

func TestDNSReplyFromAnotherGoroutine(t *testing.T) {
	for _, n := range []int{0, 1, 511, 3000} { // odd lengths and a reply above the MTU (fragmented)
		g := newRig(t, dnsPlan(false))
		res := &laterResolver{n: n}
		g.host.HandleUDP(53, res)
		g.learn(t, "gw/front", webIP, webMAC)
		in := udpFrame(t, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr(), 40000, 53, dnsQuery(t, "web"))
		g.ports["gw/front"].Input(in, packet.Offload{})
		clear(in) // the reader's buffer is reused at once
		res.wg.Wait()
		out := g.links["gw/front"].take()
		if n < 1500 {
			require.Len(t, out, 1)
			// Not DNS, so gopacket would not decode it: check by hand.
			ip := packet.IPv4(out[0][packet.EthernetHeaderLen:])
			require.True(t, ip.Valid() && ip.HeaderChecksumValid())
			require.Equal(t, [4]byte(frontGW.Addr().As4()), ip.Src())
			require.Equal(t, [4]byte(webIP.As4()), ip.Dst())
			u := ip.Payload()
			require.Len(t, u, packet.UDPHeaderLen+n)
			require.EqualValues(t, 53, packet.Ports(u).Src())
			require.EqualValues(t, 40000, packet.Ports(u).Dst())
			require.EqualValues(t, len(u), int(u[4])<<8|int(u[5]))
			require.NotZero(t, int(u[6])<<8|int(u[7]))
			require.Zero(t, packet.Checksum(u, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoUDP, uint16(len(u)))), "UDP checksum")
			for i, b := range u[packet.UDPHeaderLen:] {
				require.Equal(t, byte(i), b)
			}
			continue
		}
		require.Len(t, out, 3, "fragments")
	}
}

// tcpFrame is a TCP segment from web to the front gateway's port 53.
func tcpFrame(t testing.TB, seq, ack uint32, syn, ackf, fin bool, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: webIP.AsSlice(), DstIP: frontGW.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: 40100, DstPort: 53, Seq: seq, Ack: ack, SYN: syn, ACK: ackf, FIN: fin, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, tcp, gopacket.Payload(payload))
}

func tcpOf(t *testing.T, f []byte) *layers.TCP {
	t.Helper()
	p := decode(f)
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	c := *tcp
	_ = c.SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv4).(*layers.IPv4))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(tcp.Payload)))
	require.Equal(t, tcp.Checksum, c.Checksum, "TCP checksum")
	return tcp
}

// framed is a DNS message with its two-byte length, as TCP carries it.
func framed(q []byte) []byte { return append([]byte{byte(len(q) >> 8), byte(len(q))}, q...) }

// answerOf decodes the DNS messages of a TCP payload.
func answersOf(t *testing.T, b []byte) []*miekg.Msg {
	t.Helper()
	var out []*miekg.Msg
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 2)
		n := int(b[0])<<8 | int(b[1])
		require.GreaterOrEqual(t, len(b)-2, n)
		m := new(miekg.Msg)
		require.NoError(t, m.Unpack(b[2:2+n]))
		out = append(out, m)
		b = b[2+n:]
	}
	return out
}

func TestDNSOverTCP(t *testing.T) {
	plan := dnsPlan(false)
	g := newRig(t, plan)
	dns.New(plan, nil, nil).Register(g.host)
	g.learn(t, "gw/front", webIP, webMAC)
	in := g.ports["gw/front"]
	out := g.links["gw/front"]

	in.Input(tcpFrame(t, 1000, 0, true, false, false, nil), packet.Offload{})
	f := out.take()
	require.Len(t, f, 1)
	synack := tcpOf(t, f[0])
	require.True(t, synack.SYN && synack.ACK)
	require.EqualValues(t, 1001, synack.Ack)
	isn := synack.Seq

	in.Input(tcpFrame(t, 1001, isn+1, false, true, false, nil), packet.Offload{}) // handshake done: nothing to say
	require.Empty(t, out.take())
	require.Equal(t, 1, g.host.Conns())

	// Two queries, one after the other, on the same connection (RFC 7766).
	seq, ours := uint32(1001), isn+1
	for _, name := range []string{"www", "web"} {
		q := framed(dnsQuery(t, name))
		in.Input(tcpFrame(t, seq, ours, false, true, false, q), packet.Offload{})
		f = out.take()
		require.Len(t, f, 1, name)
		ans := tcpOf(t, f[0])
		require.True(t, ans.ACK && ans.PSH && !ans.FIN, "the connection stays open for more")
		require.Equal(t, ours, ans.Seq)
		seq += uint32(len(q))
		require.Equal(t, seq, ans.Ack)
		ms := answersOf(t, ans.Payload)
		require.Len(t, ms, 1)
		require.Equal(t, webIP.String(), ms[0].Answer[0].(*miekg.A).A.String())
		ours += uint32(len(ans.Payload))
	}

	// Two queries in one segment, then one split across two segments.
	two := append(framed(dnsQuery(t, "www")), framed(dnsQuery(t, "web"))...)
	in.Input(tcpFrame(t, seq, ours, false, true, false, two), packet.Offload{})
	f = out.take()
	require.Len(t, f, 2)
	for _, fr := range f {
		ans := tcpOf(t, fr)
		require.Equal(t, ours, ans.Seq)
		require.Len(t, answersOf(t, ans.Payload), 1)
		ours += uint32(len(ans.Payload))
	}
	seq += uint32(len(two))
	q := framed(dnsQuery(t, "www"))
	in.Input(tcpFrame(t, seq, ours, false, true, false, q[:5]), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1, "half a query is acknowledged")
	ack := tcpOf(t, f[0])
	require.Empty(t, ack.Payload)
	require.Equal(t, seq+5, ack.Ack)
	in.Input(tcpFrame(t, seq+5, ours, false, true, false, q[5:]), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1)
	ans := tcpOf(t, f[0])
	require.Len(t, answersOf(t, ans.Payload), 1)
	ours += uint32(len(ans.Payload))
	seq += uint32(len(q))

	// A retransmitted segment is acknowledged again and not answered twice.
	in.Input(tcpFrame(t, seq-uint32(len(q)-5), ours, false, true, false, q[5:]), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1)
	dup := tcpOf(t, f[0])
	require.Empty(t, dup.Payload)
	require.Equal(t, seq, dup.Ack)

	// The client closes: acknowledged with our FIN; its last ACK ends it.
	in.Input(tcpFrame(t, seq, ours, false, true, true, nil), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1)
	fin := tcpOf(t, f[0])
	require.True(t, fin.ACK && fin.FIN)
	require.Equal(t, seq+1, fin.Ack)
	require.Equal(t, ours, fin.Seq)
	in.Input(tcpFrame(t, seq+1, ours+1, false, true, false, nil), packet.Offload{})
	require.Empty(t, out.take())
	require.Zero(t, g.host.Conns())

	// A segment of no connection, and other TCP ports, get a reset.
	in.Input(tcpFrame(t, seq+1, ours+1, false, true, false, framed(dnsQuery(t, "www"))), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1)
	require.True(t, tcpOf(t, f[0]).RST)
	// (at the uplink address: the gateway's other ports are the host's)
	eth := &layers.Ethernet{SrcMAC: hw(webMAC), DstMAC: hw(macFor(frontGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: webIP.AsSlice(), DstIP: uplinkIP.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: 40100, DstPort: 22, Seq: 5, SYN: true, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	in.Input(serialize(t, eth, ip, tcp), packet.Offload{})
	f = out.take()
	require.Len(t, f, 1)
	require.True(t, decode(f[0]).Layer(layers.LayerTypeTCP).(*layers.TCP).RST)
}

func TestDNSOverTCPOnlyWhereDNSIs(t *testing.T) {
	plan := dnsPlan(false)
	plan.Uplink = nil // else back's port 53 is the host's
	g := newRig(t, plan)
	dns.New(plan, nil, nil).Register(g.host)
	g.learn(t, "gw/back", dbIP, dbMAC)
	eth := &layers.Ethernet{SrcMAC: hw(dbMAC), DstMAC: hw(macFor(backGW.Addr())), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: dbIP.AsSlice(), DstIP: backGW.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: 40100, DstPort: 53, Seq: 7, SYN: true, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	g.ports["gw/back"].Input(serialize(t, eth, ip, tcp), packet.Offload{})
	f := g.links["gw/back"].take()
	require.Len(t, f, 1)
	rst := tcpOf(t, f[0])
	require.True(t, rst.RST && rst.ACK)
	require.EqualValues(t, 8, rst.Ack)
	require.Zero(t, g.host.Conns())
}
