package nat

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/policy"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/stats"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// withRules adds [[rule]] entries to the test plan, numbered from line 100.
func withRules(rules ...config.Rule) func(*config.Plan) {
	return func(p *config.Plan) {
		for i, r := range rules {
			r.Line = 100 + i
			p.Rules = append(p.Rules, r)
		}
	}
}

func TestRuleActionsPerHook(t *testing.T) {
	dropped := Verdict{Action: Drop, Reason: stats.Filtered}
	t.Run("prerouting drop by source", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "prerouting", Src: pfx("172.20.0.11/32"), Action: "drop"}))
		require.Equal(t, dropped, g.pass("front", udpPkt(t, ap(web2Addr, 1), ap(remoteAddr, 53), "x")).v)
		g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "x"))
		require.Equal(t, 1, g.tr.Table.Len(), "a dropped packet makes no connection")
		require.EqualValues(t, 1, g.row("rule line 100").Packets)
	})
	t.Run("input reject by proto and dport", func(t *testing.T) {
		// at the uplink address: the gateway's ports are the host's
		g := newRig(t, withRules(config.Rule{Hook: "input", Proto: "udp", Dport: [2]uint16{53, 53}, Action: "reject"}))
		r := g.pass("front", udpPkt(t, ap(webAddr, 1), ap(uplinkAddr, 53), "x"))
		require.Empty(t, r.out)
		require.Equal(t, Verdict{Action: Reject, Reason: stats.Filtered}, r.v)
		require.Equal(t, accept, g.pass("front", udpPkt(t, ap(webAddr, 1), ap(uplinkAddr, 54), "x")).v)
		require.Equal(t, accept, g.pass("front", tcpPkt(t, ap(webAddr, 1), ap(uplinkAddr, 53), fSYN, "")).v)
		// forwarded packets do not see input rules
		g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "x"))
	})
	t.Run("forward accept before isolation", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "forward", Src: pfx("172.20.0.0/24"), Dst: pfx("172.21.0.0/24"),
			Proto: "tcp", Dport: [2]uint16{5432, 5432}, Action: "accept"}))
		out := g.forward("front", "back", tcpPkt(t, ap(webAddr, 40000), ap(dbAddr, 5432), fSYN, ""))
		requireFlow(t, out, ap(webAddr, 40000), ap(dbAddr, 5432))
		g.forward("back", "front", tcpPkt(t, ap(dbAddr, 5432), ap(webAddr, 40000), fSYN|fACK, "")) // established
		require.Equal(t, Verdict{Action: Drop, Reason: stats.Isolated},
			g.pass("front", tcpPkt(t, ap(webAddr, 40001), ap(dbAddr, 5433), fSYN, "")).v)
		require.Equal(t, Verdict{Action: Drop, Reason: stats.Isolated},
			g.pass("back", tcpPkt(t, ap(dbAddr, 40002), ap(webAddr, 5432), fSYN, "")).v, "one way only")
	})
	t.Run("forward drop by in, out and state", func(t *testing.T) {
		// the uplink may not open connections to front, replies still come
		g := newRig(t, withRules(config.Rule{Hook: "forward", In: UplinkName, Out: "front", State: []string{"new"}, Action: "drop"}))
		require.Equal(t, dropped, g.pass(UplinkName, udpPkt(t, ap(hostAddr, 1), ap(webAddr, 9), "x")).v)
		g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 9), ap(hostAddr, 2), "x"))
		g.forward(UplinkName, "front", udpPkt(t, ap(hostAddr, 2), ap(uplinkAddr, 9), "y"))
		require.Equal(t, dropped, g.pass(UplinkName, tcpPkt(t, ap(hostAddr, 3), ap(uplinkAddr, 8080), fSYN, "")).v,
			"published ports too: user rules come first")
	})
	t.Run("forward drop by sport range", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "forward", Proto: "udp", Sport: [2]uint16{1000, 2000}, Action: "drop"}))
		for port, want := range map[uint16]Action{999: Accept, 1000: Drop, 1500: Drop, 2000: Drop, 2001: Accept} {
			require.Equal(t, want, g.pass("front", udpPkt(t, ap(webAddr, port), ap(remoteAddr, 53), "x")).v.Action, port)
		}
		require.Equal(t, Accept, g.pass("front", tcpPkt(t, ap(webAddr, 1500), ap(remoteAddr, 53), fSYN, "")).v.Action)
	})
	t.Run("output drop", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "output", Out: "front", Proto: "icmp", Action: "drop"}))
		require.Equal(t, dropped, g.tr.Output(ping(t, frontGW, webAddr, 1, 1, true), "front"))
		require.Equal(t, accept, g.tr.Output(ping(t, backGW, dbAddr, 1, 1, true), "back"))
		require.Equal(t, accept, g.tr.Output(tcpPkt(t, ap(frontGW, 80), ap(webAddr, 1), fRST|fACK, ""), "front"))
	})
	t.Run("postrouting snat", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "postrouting", Src: pfx("172.21.0.0/24"), Out: UplinkName, Action: "snat", To: "10.250.0.2:2000"}))
		out := g.forward("back", UplinkName, tcpPkt(t, ap(dbAddr, 40000), ap(remoteAddr, 443), fSYN, ""))
		requireFlow(t, out, ap(uplinkAddr, 2000), ap(remoteAddr, 443))
		in := g.forward(UplinkName, "back", tcpPkt(t, ap(remoteAddr, 443), ap(uplinkAddr, 2000), fSYN|fACK, ""))
		requireFlow(t, in, ap(remoteAddr, 443), ap(dbAddr, 40000))
		// a second connection cannot have port 2000 towards the same server
		out = g.forward("back", UplinkName, tcpPkt(t, ap(dbAddr, 40001), ap(remoteAddr, 443), fSYN, ""))
		require.NotEqual(t, ap(uplinkAddr, 2000), decodeIP(t, out).src())
		require.Equal(t, uplinkAddr, decodeIP(t, out).src().Addr())
		require.True(t, g.entry(ap(dbAddr, 40001)).SNAT)
	})
	t.Run("postrouting masquerade", func(t *testing.T) {
		g := newRig(t, withRules(config.Rule{Hook: "postrouting", In: "", Src: pfx("172.21.0.0/24"), Out: UplinkName, Action: "masquerade"}))
		out := g.forward("back", UplinkName, udpPkt(t, ap(dbAddr, 5000), ap(remoteAddr, 53), "x"))
		requireFlow(t, out, ap(uplinkAddr, 5000), ap(remoteAddr, 53))
		require.EqualValues(t, 1, g.row("rule line 100").Packets)
	})
	t.Run("prerouting dnat before the published ports", func(t *testing.T) {
		g := newRig(t, withRules(
			config.Rule{Hook: "prerouting", In: UplinkName, Proto: "tcp", Dport: [2]uint16{8080, 8080}, Action: "dnat", To: "172.20.0.11:8000"},
			config.Rule{Hook: "prerouting", In: UplinkName, Proto: "tcp", Dport: [2]uint16{2222, 2222}, Action: "dnat", To: "172.21.0.20"},
		))
		out := g.forward(UplinkName, "front", tcpPkt(t, ap(hostAddr, 1), ap(uplinkAddr, 8080), fSYN, ""))
		requireFlow(t, out, ap(hostAddr, 1), ap(web2Addr, 8000))
		back := g.forward("front", UplinkName, tcpPkt(t, ap(web2Addr, 8000), ap(hostAddr, 1), fSYN|fACK, ""))
		requireFlow(t, back, ap(uplinkAddr, 8080), ap(hostAddr, 1))
		out = g.forward(UplinkName, "back", tcpPkt(t, ap(hostAddr, 2), ap(uplinkAddr, 2222), fSYN, ""))
		requireFlow(t, out, ap(hostAddr, 2), ap(dbAddr, 2222)) // the port is kept
		require.Zero(t, g.row("publish web 8080:80/tcp").Packets)
	})
	t.Run("log goes on", func(t *testing.T) {
		var logged recorder
		g := newRig(t, withRules(config.Rule{Hook: "forward", Proto: "udp", Action: "log"},
			config.Rule{Hook: "forward", Proto: "udp", Dport: [2]uint16{9, 9}, Action: "drop"}))
		rules, err := compilePlan(g.plan, slog.New(&logged))
		require.NoError(t, err)
		g.tr = NewTracker(rules, 100, g.clk)
		g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 53), "x"))
		require.Equal(t, dropped, g.pass("front", udpPkt(t, ap(webAddr, 1), ap(remoteAddr, 9), "x")).v)
		require.EqualValues(t, 2, g.row("rule line 100").Packets)
		require.EqualValues(t, 1, g.row("rule line 101").Packets)
		msgs := logged.messages()
		require.Len(t, msgs, 1, "at most one line a second per rule")
		require.Contains(t, msgs[0], "udp src=172.20.0.10 dst=198.51.100.7 sport=1 dport=53")
		require.Contains(t, msgs[0], "rule line 100")
	})
}

// recorder is a slog handler that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	return nil
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func TestRuleMatchFields(t *testing.T) {
	m := Meta{T: Tuple{Src: webAddr.As4(), Dst: remoteAddr.As4(), Sport: 1500, Dport: 443, Proto: 6},
		In: "front", Out: UplinkName, State: StateEstablished}
	for _, tc := range []struct {
		rule config.Rule
		want bool
	}{
		{config.Rule{}, true},
		{config.Rule{Src: pfx("172.20.0.0/16")}, true},
		{config.Rule{Src: pfx("172.21.0.0/16")}, false},
		{config.Rule{Dst: pfx("198.51.100.7/32")}, true},
		{config.Rule{Dst: pfx("0.0.0.0/0")}, true},
		{config.Rule{Dst: pfx("198.51.100.8/32")}, false},
		{config.Rule{Proto: "tcp"}, true},
		{config.Rule{Proto: "udp"}, false},
		{config.Rule{Proto: "tcp", Sport: [2]uint16{1500, 1500}}, true},
		{config.Rule{Proto: "tcp", Sport: [2]uint16{1000, 1499}}, false},
		{config.Rule{Proto: "tcp", Dport: [2]uint16{1, 443}}, true},
		{config.Rule{Proto: "tcp", Dport: [2]uint16{444, 65535}}, false},
		{config.Rule{In: "front"}, true},
		{config.Rule{In: "back"}, false},
		{config.Rule{Out: UplinkName}, true},
		{config.Rule{Out: "front"}, false},
		{config.Rule{State: []string{"established"}}, true},
		{config.Rule{State: []string{"new", "related"}}, false},
		{config.Rule{State: []string{"new", "established"}}, true},
		{config.Rule{State: []string{"INVALID"}}, false},
		{config.Rule{Src: pfx("172.20.0.0/24"), Proto: "tcp", Dport: [2]uint16{443, 443}, In: "front", Out: "back"}, false},
	} {
		tc.rule.Hook, tc.rule.Action = "forward", "accept"
		specs, err := policy.Compile(&config.Plan{Rules: []config.Rule{tc.rule}})
		require.NoError(t, err)
		r, err := compile(specs[0])
		require.NoError(t, err)
		require.Equal(t, tc.want, r.match(&m), "%+v", tc.rule)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, r := range []config.Rule{
		{Hook: "nat", Action: "accept"},
		{Hook: "forward", Action: "allow"},
		{Hook: "forward", Action: "accept", State: []string{"untracked"}},
		{Hook: "prerouting", Action: "dnat", To: "fe80::1"},
		{Hook: "prerouting", Action: "dnat", To: "10.0.0.1:0"},
		{Hook: "prerouting", Action: "dnat", To: "10.0.0.1:http"},
	} {
		_, err := compilePlan(&config.Plan{Rules: []config.Rule{r}}, slog.New(slog.DiscardHandler))
		require.Error(t, err, "%+v", r)
	}
}

func TestRuleCountersAndRows(t *testing.T) {
	g := newRig(t, withRules(config.Rule{Hook: "forward", Proto: "tcp", Action: "log"}))
	var size uint64
	for i := range 3 {
		b := tcpPkt(t, ap(hostAddr, uint16(9000+i)), ap(uplinkAddr, 8080), fSYN, strings.Repeat("x", i*10))
		size += uint64(len(b))
		g.forward(UplinkName, "front", b)
	}
	rows := g.tr.Rules.List()
	byComment := func(hook, action, comment string) rule.Listed {
		for _, r := range rows {
			if r.Hook.String() == hook && r.Action.String() == action && r.Comment == comment {
				return r
			}
		}
		require.FailNow(t, "no row", "%s %s %s", hook, action, comment)
		return rule.Listed{}
	}
	user := byComment("forward", "log", "rule line 100")
	require.EqualValues(t, 3, user.Packets)
	require.Equal(t, size, user.Bytes)
	require.Equal(t, 100, user.Line)
	require.Equal(t, "-p tcp -j LOG", user.Spec())
	dnat := byComment("prerouting", "dnat", "publish web 8080:80/tcp")
	require.EqualValues(t, 3, dnat.Packets)
	require.Equal(t, size, dnat.Bytes)
	require.Equal(t, "-d 10.250.0.2/32 ! -i secure -p tcp --dport 8080 -j DNAT --to-destination 172.20.0.10:80", dnat.Spec())
	require.Zero(t, dnat.Line)
	// established is evaluated (and counted) before the publish accept
	require.Zero(t, byComment("forward", "accept", "established").Packets)
	require.EqualValues(t, 3, byComment("forward", "accept", "publish web 8080:80/tcp").Packets)

	// evaluation order: hooks in netfilter's order, user rules first in each
	hooks := map[rule.Hook]int{}
	for i, r := range rows {
		hooks[r.Hook] = i
	}
	require.Less(t, hooks[Prerouting], hooks[Forward])
	require.Less(t, hooks[Forward], hooks[Postrouting])
	first := -1
	for i, r := range rows {
		if r.Hook == Forward && first < 0 {
			first = i
		}
	}
	require.Equal(t, "rule line 100", rows[first].Comment)

	// replies of the connections count nowhere but established
	g.forward("front", UplinkName, tcpPkt(t, ap(webAddr, 80), ap(hostAddr, 9000), fSYN|fACK, ""))
	rows = g.tr.Rules.List()
	require.EqualValues(t, 1, byComment("forward", "accept", "established").Packets)
	require.EqualValues(t, 3, byComment("prerouting", "dnat", "publish web 8080:80/tcp").Packets)
}

// richPlan is the test plan with a rule of each kind.
func richPlan(p *config.Plan) {
	p.Networks[1].Isolate = false
	withRules(
		config.Rule{Hook: "prerouting", Src: pfx("192.0.2.0/24"), Action: "drop"},
		config.Rule{Hook: "prerouting", In: UplinkName, Proto: "tcp", Dport: [2]uint16{2222, 2222}, Action: "dnat", To: "172.21.0.20:22"},
		config.Rule{Hook: "input", Proto: "udp", Dport: [2]uint16{53, 53}, State: []string{"new"}, Action: "reject"},
		config.Rule{Hook: "forward", Src: pfx("172.20.0.0/24"), Dst: pfx("172.21.0.0/24"), Proto: "tcp", Dport: [2]uint16{5432, 5432}, Action: "accept"},
		config.Rule{Hook: "forward", In: "front", Out: UplinkName, Proto: "tcp", Sport: [2]uint16{1, 1023}, Dport: [2]uint16{25, 25}, Action: "log"},
		config.Rule{Hook: "forward", State: []string{"invalid"}, Action: "drop"},
		config.Rule{Hook: "output", Out: "back", Proto: "icmp", Action: "drop"},
		config.Rule{Hook: "postrouting", Src: pfx("172.21.0.0/24"), Out: UplinkName, Action: "snat", To: "10.250.0.2"},
		config.Rule{Hook: "postrouting", Src: pfx("172.21.0.5/32"), Out: UplinkName, Proto: "udp", Action: "masquerade"},
	)(p)
}

func TestRulesGolden(t *testing.T) {
	g := newRig(t, richPlan)
	got := dump(g.tr.Rules)
	path := filepath.Join("testdata", "rules.golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./nat -update to create it")
	require.Equal(t, string(want), got)
}

// The rules a real net.toml gives compile as the file says.
func TestCompileFromConfigFile(t *testing.T) {
	p, err := config.Parse([]byte(`name = "t"
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
hook = "prerouting"
in = "uplink"
proto = "tcp"
dport = "2000-2999"
action = "dnat"
to = "172.20.0.10:22"
[[rule]]
hook = "forward"
state = "new, invalid"
out = "uplink"
proto = "udp"
action = "reject"
`), "net.toml")
	require.NoError(t, err)
	rules, err := compilePlan(p, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	dump := dump(rules)
	require.Contains(t, dump, "-A PREROUTING -i uplink -p tcp --dport 2000:2999 -j DNAT --to-destination 172.20.0.10:22 -m comment --comment \"rule line 13\"\n")
	require.Contains(t, dump, "-A FORWARD -o uplink -p udp -m conntrack --ctstate NEW,INVALID -j REJECT --reject-with icmp-port-unreachable/tcp-reset -m comment --comment \"rule line 20\"\n")
	require.Contains(t, dump, "-A POSTROUTING -s 172.20.0.0/24 -o uplink -j MASQUERADE -m comment --comment \"masquerade front\"\n")
}

// The built-in rules leave what they do not own alone: without an uplink
// there is nothing to publish or masquerade.
func TestBuiltinsWithoutUplink(t *testing.T) {
	p := testPlan()
	p.Uplink = nil
	rules, err := compilePlan(p, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	dump := dump(rules)
	require.NotContains(t, dump, "DNAT --to")
	require.NotContains(t, dump, "masquerade front")
	require.Contains(t, dump, "-A FORWARD -i front -o back -j DROP")

	// and ICMP echo is not mistaken for a published port
	g := newRig(t)
	r := g.pass(UplinkName, ping(t, hostAddr, uplinkAddr, 8080, 1, false))
	require.Empty(t, r.out)
	require.EqualValues(t, layers.ICMPv4TypeEchoRequest, decodeIP(t, r.ip).icmp.TypeCode.Type())
}
