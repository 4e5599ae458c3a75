package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

func tv(src, dst string, sport, dport uint16) nat.TupleView {
	return nat.TupleView{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Sport: sport, Dport: dport}
}

func TestConntrackLine(t *testing.T) {
	for _, tc := range []struct {
		e    nat.Entry
		want string
	}{
		{nat.Entry{Proto: "tcp", State: "ESTABLISHED", Orig: tv("172.20.0.10", "10.250.0.1", 40000, 80),
			Reply: tv("10.250.0.1", "10.250.0.2", 80, 40000), SNAT: true, Replied: true, Assured: true,
			Timeout: clock.Duration(431999*time.Second + 500*time.Millisecond), Packets: [2]uint64{5, 4}, Bytes: [2]uint64{400, 300}},
			"tcp      6 431999 ESTABLISHED src=172.20.0.10 dst=10.250.0.1 sport=40000 dport=80 packets=5 bytes=400 " +
				"src=10.250.0.1 dst=10.250.0.2 sport=80 dport=40000 packets=4 bytes=300 [ASSURED] snat"},
		{nat.Entry{Proto: "udp", Orig: tv("10.250.0.1", "10.250.0.2", 5353, 8080),
			Reply: tv("172.20.0.10", "10.250.0.1", 53, 5353), DNAT: true,
			Timeout: clock.Duration(29 * time.Second), Packets: [2]uint64{1, 0}, Bytes: [2]uint64{33, 0}},
			"udp      17 29 src=10.250.0.1 dst=10.250.0.2 sport=5353 dport=8080 packets=1 bytes=33 [UNREPLIED] " +
				"src=172.20.0.10 dst=10.250.0.1 sport=53 dport=5353 packets=0 bytes=0 dnat"},
		{nat.Entry{Proto: "icmp", Orig: tv("172.20.0.10", "8.8.8.8", 7, 7), Reply: tv("8.8.8.8", "10.250.0.2", 1030, 1030),
			SNAT: true, DNAT: true, Replied: true, Assured: true, Timeout: clock.Duration(30 * time.Second), Packets: [2]uint64{1, 1}, Bytes: [2]uint64{84, 84}},
			"icmp     1 30 src=172.20.0.10 dst=8.8.8.8 type=8 code=0 id=7 packets=1 bytes=84 " +
				"src=8.8.8.8 dst=10.250.0.2 type=0 code=0 id=1030 packets=1 bytes=84 [ASSURED] snat dnat"},
		{nat.Entry{Proto: "proto-47", Orig: tv("172.20.0.10", "172.20.0.11", 0, 0), Reply: tv("172.20.0.11", "172.20.0.10", 0, 0),
			Timeout: clock.Duration(600 * time.Second)},
			"proto-47 47 600 src=172.20.0.10 dst=172.20.0.11 packets=0 bytes=0 [UNREPLIED] src=172.20.0.11 dst=172.20.0.10 packets=0 bytes=0"},
		// IPv6: NAT66 of TCP and ICMPv6 echo (types 128 and 129)
		{nat.Entry{Family: "ipv6", Proto: "tcp", State: "ESTABLISHED", Orig: tv("fd00:20::10", "2001:db8::7", 40000, 443),
			Reply: tv("2001:db8::7", "fd00:ff::2", 443, 40000), SNAT: true, Replied: true, Assured: true,
			Timeout: clock.Duration(431999 * time.Second), Packets: [2]uint64{5, 4}, Bytes: [2]uint64{500, 400}},
			"tcp      6 431999 ESTABLISHED src=fd00:20::10 dst=2001:db8::7 sport=40000 dport=443 packets=5 bytes=500 " +
				"src=2001:db8::7 dst=fd00:ff::2 sport=443 dport=40000 packets=4 bytes=400 [ASSURED] snat"},
		{nat.Entry{Family: "ipv6", Proto: "icmpv6", Orig: tv("fd00:20::10", "2001:db8::7", 7, 7), Reply: tv("2001:db8::7", "fd00:ff::2", 7, 7),
			SNAT: true, Replied: true, Assured: true, Timeout: clock.Duration(30 * time.Second), Packets: [2]uint64{1, 1}, Bytes: [2]uint64{104, 104}},
			"icmpv6   58 30 src=fd00:20::10 dst=2001:db8::7 type=128 code=0 id=7 packets=1 bytes=104 " +
				"src=2001:db8::7 dst=fd00:ff::2 type=129 code=0 id=7 packets=1 bytes=104 [ASSURED] snat"},
		// a SYN answered but not acknowledged: replied, not yet assured
		{nat.Entry{Proto: "tcp", State: "SYN_RECV", Orig: tv("203.0.113.9", "10.250.0.2", 4000, 8080),
			Reply: tv("172.20.0.10", "203.0.113.9", 80, 4000), DNAT: true, Replied: true,
			Timeout: clock.Duration(60 * time.Second), Packets: [2]uint64{1, 1}, Bytes: [2]uint64{60, 60}},
			"tcp      6 60 SYN_RECV src=203.0.113.9 dst=10.250.0.2 sport=4000 dport=8080 packets=1 bytes=60 " +
				"src=172.20.0.10 dst=203.0.113.9 sport=80 dport=4000 packets=1 bytes=60 dnat"},
	} {
		require.Equal(t, tc.want, conntrackLine(tc.e))
	}
}

// uplinkPlan is instancePlan with an uplink (10.250.0.2/30, host side
// 10.250.0.1), front masqueraded to it and web (172.20.0.10) publishing
// 8080:80/tcp.
func uplinkPlan() *config.Plan {
	plan := instancePlan()
	plan.Uplink = &config.Uplink{Address: netip.MustParsePrefix("10.250.0.2/30"), HostAddress: netip.MustParsePrefix("10.250.0.1/30"),
		MAC: packet.MAC{0x02, 0x42, 0x0a, 0xfa, 0x00, 0x02}}
	plan.Networks[0].Masquerade = true
	web := netip.MustParseAddr("172.20.0.10")
	plan.Endpoints = []config.Endpoint{{Name: "web", Mode: config.ModeBridge,
		Interfaces: []config.Interface{{Name: "eth0", Port: "web", Network: "front", IP: web, Prefix: netip.PrefixFrom(web, 24),
			MAC: macWeb, Gateway: plan.Networks[0].Gateway, MTU: 1500}},
		Publish: []config.Publish{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}}}
	return plan
}

// connect has web send a UDP datagram (33 bytes of IP) from port 40000 to
// the uplink's host side, 10.250.0.1:53, and waits for its connection.
func (in *instance) connect(t *testing.T) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macWeb[:], DstMAC: []byte{0x02, 0x42, 0xac, 0x14, 0x00, 0x01}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr("172.20.0.10").AsSlice(), DstIP: netip.MustParseAddr("10.250.0.1").AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload("hello")))
	in.ports["web"].Inject(buf.Bytes())
	require.Eventually(t, func() bool { return in.dp.Tracker().Table.Len() == 1 }, 5*time.Second, time.Millisecond)
}

func TestConntrackCommand(t *testing.T) {
	in := startInstancePlan(t, uplinkPlan())
	ctx := context.Background()
	var out, errOut bytes.Buffer
	require.NoError(t, conntrack(ctx, []string{"--control", in.sock}, &out, &errOut))
	require.Empty(t, out.String())
	require.Equal(t, "uswitch: 0 flow entries have been shown.\n", errOut.String())

	in.connect(t)
	out.Reset()
	errOut.Reset()
	require.NoError(t, conntrack(ctx, []string{"--control", in.sock}, &out, &errOut))
	require.Equal(t, lines(
		"udp      17 30 src=172.20.0.10 dst=10.250.0.1 sport=40000 dport=53 packets=1 bytes=33 [UNREPLIED] "+
			"src=10.250.0.1 dst=10.250.0.2 sport=53 dport=40000 packets=0 bytes=0 snat",
	), out.String())
	require.Equal(t, "uswitch: 1 flow entries have been shown.\n", errOut.String())

	out.Reset()
	errOut.Reset()
	require.NoError(t, conntrack(ctx, []string{"--control", in.sock, "-o", "json", "--proto", "udp"}, &out, &errOut))
	var entries []nat.Entry
	require.NoError(t, json.Unmarshal(out.Bytes(), &entries))
	require.Len(t, entries, 1)
	require.Equal(t, tv("172.20.0.10", "10.250.0.1", 40000, 53), entries[0].Orig)
	require.Equal(t, 30*time.Second, time.Duration(entries[0].Timeout))
	require.True(t, entries[0].SNAT)
	require.Equal(t, "uswitch: 1 flow entries have been shown.\n", errOut.String())

	out.Reset()
	errOut.Reset()
	require.NoError(t, conntrack(ctx, []string{"--control", in.sock, "-o", "json", "--proto", "tcp"}, &out, &errOut))
	require.Equal(t, "[]\n", out.String())
	require.Equal(t, "uswitch: 0 flow entries have been shown.\n", errOut.String())

	// the filters of conntrack -L, applied by the server
	for _, tc := range []struct {
		args []string
		n    int
	}{
		{[]string{"--src", "172.20.0.10"}, 1}, {[]string{"--src", "172.20.0.11"}, 0},
		{[]string{"--dst", "10.250.0.1", "--dport", "53"}, 1}, {[]string{"--sport", "40000", "--proto", "udp"}, 1},
		{[]string{"--dport", "80"}, 0}, {[]string{"--state", "ESTABLISHED"}, 0},
	} {
		out.Reset()
		errOut.Reset()
		require.NoError(t, conntrack(ctx, append([]string{"--control", in.sock, "-o", "json"}, tc.args...), &out, &errOut))
		require.NoError(t, json.Unmarshal(out.Bytes(), &entries))
		require.Len(t, entries, tc.n, "%v", tc.args)
	}

	err := conntrack(ctx, []string{"--control", in.sock, "--proto", "sctp"}, &out, &errOut)
	require.EqualError(t, err, `query parameter proto="sctp": want tcp, udp, icmp or icmpv6`)
	err = conntrack(ctx, []string{"--control", in.sock, "--dport", "http"}, &out, &errOut)
	require.EqualError(t, err, `query parameter dport="http": not a port (1-65535)`)
}

func TestRulesCommand(t *testing.T) {
	in := startInstancePlan(t, uplinkPlan())
	in.connect(t)
	var out bytes.Buffer
	require.NoError(t, rules(context.Background(), []string{"--control", in.sock}, &out))
	require.Equal(t, lines(
		"Chain PREROUTING (policy ACCEPT)",
		"pkts  bytes  target  prot  in     out  source     destination",
		"   0      0  DNAT    tcp   *      *    0.0.0.0/0  10.250.0.2   tcp dpt:8080 to:172.20.0.10:80 /* publish web 8080:80/tcp */",
		"   0      0  DNAT    tcp   front  *    0.0.0.0/0  172.20.0.1   tcp dpt:8080 to:172.20.0.10:80 /* publish web 8080:80/tcp at gateway front */",
		"   0      0  DNAT    tcp   front  *    0.0.0.0/0  172.20.0.1   to:10.250.0.1 /* host gateway front */",
		"   0      0  DNAT    udp   front  *    0.0.0.0/0  172.20.0.1   to:10.250.0.1 /* host gateway front */",
		"",
		"Chain INPUT (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out  source  destination",
		"",
		"Chain FORWARD (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out    source     destination",
		"   0      0  ACCEPT  all   *   *      0.0.0.0/0  0.0.0.0/0    ctstate ESTABLISHED,RELATED /* established */",
		"   0      0  DROP    all   *   *      0.0.0.0/0  0.0.0.0/0    ctstate INVALID /* invalid */",
		"   0      0  ACCEPT  tcp   *   front  0.0.0.0/0  172.20.0.10  tcp dpt:80 ctstate DNAT /* publish web 8080:80/tcp */",
		"",
		"Chain OUTPUT (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out  source  destination",
		"",
		"Chain POSTROUTING (policy ACCEPT)",
		"pkts  bytes  target      prot  in  out     source         destination",
		"   0      0  MASQUERADE  tcp   *   front   172.20.0.0/24  172.20.0.10  tcp dpt:80 ctstate DNAT /* hairpin web 8080:80/tcp */",
		"   1     33  MASQUERADE  all   *   uplink  172.20.0.0/24  0.0.0.0/0    /* masquerade front */",
	), out.String())

	out.Reset()
	require.NoError(t, rules(context.Background(), []string{"--control", in.sock, "-o", "json"}, &out))
	var rows []rule.Listed
	require.NoError(t, json.Unmarshal(out.Bytes(), &rows))
	require.Len(t, rows, 9)
	require.Equal(t, rule.Listed{Rule: rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade,
		Match: rule.Match{Src: netip.MustParsePrefix("172.20.0.0/24"), Out: "uplink"}, Comment: "masquerade front"},
		Family: rule.FamilyIPv4, Position: 2, Packets: 1, Bytes: 33}, rows[8])
}

// IPv6 rules show as ip6tables -L -v -n shows them: ::/0 for any address,
// a host without its /128, a bracketed target with a port.
func TestWriteRulesIPv6(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	rows := []rule.Listed{
		{Rule: rule.Rule{Hook: rule.Prerouting, Action: rule.DNAT, Comment: "publish web 8080:80/tcp",
			Match:  rule.Match{Dst: p("fd00:ff::2/128"), Proto: "tcp", Dport: rule.Ports{8080, 8080}},
			ToAddr: a("fd00:20::10"), ToPort: 80}, Family: rule.FamilyIPv6, Position: 1, Packets: 3, Bytes: 240},
		{Rule: rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade, Comment: "masquerade6 front",
			Match: rule.Match{Src: p("fd00:20::/64"), Out: "uplink"}}, Family: rule.FamilyIPv6, Position: 1},
	}
	var out bytes.Buffer
	require.NoError(t, writeRules(&out, rows, false))
	require.Contains(t, out.String(), "   3    240  DNAT    tcp   *   *    ::/0    fd00:ff::2   tcp dpt:8080 to:[fd00:20::10]:80 /* publish web 8080:80/tcp */\n")
	require.Contains(t, out.String(), "   0      0  MASQUERADE  all   *   uplink  fd00:20::/64  ::/0         /* masquerade6 front */\n")
}

func TestWriteRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	rows := []rule.Listed{
		{Rule: rule.Rule{Hook: rule.Prerouting, Action: rule.DNAT,
			Match:  rule.Match{Dst: pfx("10.250.0.2/32"), NotIn: []string{"internal", "lab"}, Proto: "udp", Dport: rule.Ports{5353, 5353}},
			ToAddr: netip.MustParseAddr("172.20.0.10"), ToPort: 53, Comment: "publish web 5353:53/udp"},
			Position: 1, Packets: 123456, Bytes: 98765432109},
		{Rule: rule.Rule{Hook: rule.Forward, Action: rule.Reject,
			Match: rule.Match{Src: pfx("172.20.0.0/24"), Dst: pfx("172.21.0.0/24"), In: "front", Out: "back", Proto: "tcp",
				Sport: rule.Ports{1000, 2000}, Dport: rule.Ports{5432, 5432}, State: rule.New},
			Comment: "rule line 12", Line: 12},
			Position: 1, Packets: 7, Bytes: 420},
		{Rule: rule.Rule{Hook: rule.Postrouting, Action: rule.SNAT, Match: rule.Match{Out: "uplink"},
			ToAddr: netip.MustParseAddr("10.250.0.2"), ToPort: 4000, Comment: "rule line 20", Line: 20}, Position: 1},
	}
	var b bytes.Buffer
	require.NoError(t, writeRules(&b, rows, false))
	require.Equal(t, lines(
		"Chain PREROUTING (policy ACCEPT)",
		"pkts  bytes  target  prot  in              out  source     destination",
		"123K    99G  DNAT    udp   !internal,!lab  *    0.0.0.0/0  10.250.0.2   udp dpt:5353 to:172.20.0.10:53 /* publish web 5353:53/udp */",
		"",
		"Chain INPUT (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out  source  destination",
		"",
		"Chain FORWARD (policy ACCEPT)",
		"pkts  bytes  target  prot  in     out   source         destination",
		"   7    420  REJECT  tcp   front  back  172.20.0.0/24  172.21.0.0/24  tcp spts:1000:2000 dpt:5432 ctstate NEW reject-with icmp-port-unreachable/tcp-reset /* rule line 12 */",
		"",
		"Chain OUTPUT (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out  source  destination",
		"",
		"Chain POSTROUTING (policy ACCEPT)",
		"pkts  bytes  target  prot  in  out     source     destination",
		"   0      0  SNAT    all   *   uplink  0.0.0.0/0  0.0.0.0/0    to:10.250.0.2:4000 /* rule line 20 */",
	), b.String())

	b.Reset()
	require.NoError(t, writeRules(&b, rows[:1], true))
	require.Contains(t, b.String(), "123456  98765432109  DNAT")
}

func TestIptablesNum(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0", 99999: "99999", 100000: "100K", 9999499: "9999K", 9999500: "10M",
		1234567890: "1235M", 98765432109: "99G", 12345678901234: "12T",
	} {
		require.Equal(t, want, iptablesNum(n), "%d", n)
	}
}

func TestWriteCompiledRules(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "net.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`name = "lab"

[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[endpoint]]
name = "web"
network = "front"
ip = "172.20.0.10"
publish = ["8080:80/tcp"]

[[rule]]
hook = "forward"
proto = "tcp"
dport = "5432"
action = "drop"
`), 0o644))
	plan, err := config.Load(cfg)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, writeCompiledRules(&b, plan))
	require.Equal(t, lines(
		"",
		"COMPILED RULES",
		`-A PREROUTING -d 10.250.0.2/32 -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80 -m comment --comment "publish web 8080:80/tcp"`,
		`-A PREROUTING -d 172.20.0.1/32 -i front -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80 -m comment --comment "publish web 8080:80/tcp at gateway front"`,
		`-A PREROUTING -d 172.20.0.1/32 -i front -p tcp --dport 1:52 -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
		`-A PREROUTING -d 172.20.0.1/32 -i front -p tcp --dport 54:65535 -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
		`-A PREROUTING -d 172.20.0.1/32 -i front -p udp --dport 1:52 -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
		`-A PREROUTING -d 172.20.0.1/32 -i front -p udp --dport 54:65535 -j DNAT --to-destination 10.250.0.1 -m comment --comment "host gateway front"`,
		`-A FORWARD -p tcp --dport 5432 -j DROP -m comment --comment "rule line 17"`,
		`-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT -m comment --comment "established"`,
		`-A FORWARD -m conntrack --ctstate INVALID -j DROP -m comment --comment "invalid"`,
		`-A FORWARD -d 172.20.0.10/32 -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT -m comment --comment "publish web 8080:80/tcp"`,
		`-A POSTROUTING -s 172.20.0.0/24 -d 172.20.0.10/32 -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE -m comment --comment "hairpin web 8080:80/tcp"`,
		`-A POSTROUTING -s 172.20.0.0/24 -o uplink -j MASQUERADE -m comment --comment "masquerade front"`,
	), b.String())
}
