package datapath

import (
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/trace"
)

var hostMAC = packet.MAC{0x02, 0xaa, 0, 0, 0, 1}

// send hands frame to the real datapath as if port had received it, on the
// test's goroutine, so that what it does is done when send returns.
func (tp *topo) send(t *testing.T, port string, frame []byte) {
	t.Helper()
	f := append([]byte(nil), frame...)
	for _, n := range tp.dp.switches() {
		if p := n.sw.Port(port); p != nil {
			n.sw.Input(p, f, packet.Offload{})
			return
		}
	}
	t.Fatalf("no port %q", port)
}

// drained empties every port's queue and returns what each received.
func (tp *topo) drained() map[string][][]byte {
	got := map[string][][]byte{}
	for name, m := range tp.mems {
		for m.Pending() > 0 {
			got[name] = append(got[name], m.Recv(time.Second))
		}
	}
	return got
}

// drops returns the drop counters of every port by "port/reason".
func (tp *topo) drops() map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range tp.dp.Ports() {
		for r, n := range p.Drops {
			out[p.Name+"/"+r] = n
		}
	}
	return out
}

func isARP(f []byte) bool { return packet.Ethernet(f).EtherType() == packet.EtherTypeARP }

// publishedPlan: testPlan with web publishing 8080 as its 80, not isolated,
// and a [[rule]] rejecting TCP to port 22 at the forward hook.
func publishedPlan() *config.Plan {
	p := testPlan(false)
	p.Endpoints[0].Publish = []config.Publish{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}
	p.Rules = []config.Rule{{Hook: "forward", Proto: "tcp", Dport: [2]uint16{22, 22}, Action: "reject", Line: 7}}
	return p
}

// TestTraceAgreesWithDatapath: for each case the synthetic trace's verdict
// is what the datapath then does with the same frame: the same frame leaves
// the same ports, or the same drop counter rises, or the frame waits for
// ARP (an ARP request goes out and nothing else).
func TestTraceAgreesWithDatapath(t *testing.T) {
	webARP := func(t *testing.T, tp *topo) { tp.send(t, "web", arpRequest(t, webMAC, "172.20.0.10", "172.20.0.1")) }
	web2ARP := func(t *testing.T, tp *topo) {
		tp.send(t, "web2", arpRequest(t, mac4(netip.MustParseAddr("172.20.0.11")), "172.20.0.11", "172.20.0.1"))
	}
	dbARP := func(t *testing.T, tp *topo) { tp.send(t, "db", arpRequest(t, dbMAC, "172.21.0.20", "172.21.0.1")) }
	hostARP := func(t *testing.T, tp *topo) {
		tp.send(t, rule.Uplink, arpRequest(t, hostMAC, "10.250.0.1", "10.250.0.2"))
	}
	cases := []struct {
		name   string
		plan   *config.Plan
		setup  []func(*testing.T, *topo)
		q      TraceQuery
		action string
		reason string   // for drops
		ports  []string // for forwards
		rule   string   // a step names this rule
	}{
		{name: "known unicast", plan: testPlan(false), setup: []func(*testing.T, *topo){web2ARP},
			q: TraceQuery{Port: "web", Dst: "172.20.0.11", Proto: "udp"}, action: "forward", ports: []string{"front/web2"}},
		{name: "flood", plan: testPlan(false),
			q: TraceQuery{Port: "web", Dst: "172.20.0.11", Proto: "udp"}, action: "forward", ports: []string{"front/web2"}},
		{name: "spoofed source", plan: testPlan(false),
			q: TraceQuery{Port: "web", Src: "172.20.0.50", Dst: "172.20.0.11"}, action: "drop", reason: "spoofed-ip"},
		{name: "isolated networks", plan: testPlan(true), setup: []func(*testing.T, *topo){dbARP},
			q: TraceQuery{Port: "web", Dst: "172.21.0.20", Proto: "tcp", Dport: 5432}, action: "drop", reason: "isolated", rule: "isolation"},
		{name: "rule reject", plan: publishedPlan(), setup: []func(*testing.T, *topo){webARP, dbARP},
			q: TraceQuery{Port: "web", Dst: "172.21.0.20", Proto: "tcp", Dport: 22}, action: "drop", reason: "filtered", rule: "rule line 7"},
		{name: "masquerade", plan: testPlan(true), setup: []func(*testing.T, *topo){hostARP},
			q: TraceQuery{Port: "web", Dst: "10.250.0.1", Proto: "tcp", Dport: 80}, action: "forward", ports: []string{"uplink"}, rule: "masquerade front"},
		{name: "published port", plan: publishedPlan(), setup: []func(*testing.T, *topo){hostARP, webARP},
			q: TraceQuery{Port: rule.Uplink, Dst: "10.250.0.2", Proto: "tcp", Dport: 8080}, action: "forward", ports: []string{"front/web"}, rule: "publish web 8080:80/tcp"},
		{name: "hairpin", plan: publishedPlan(), setup: []func(*testing.T, *topo){webARP, web2ARP},
			q: TraceQuery{Port: "web2", Dst: "10.250.0.2", Proto: "tcp", Dport: 8080}, action: "forward", ports: []string{"front/web"}, rule: "hairpin web 8080:80/tcp"},
		{name: "ttl 1", plan: testPlan(false), setup: []func(*testing.T, *topo){webARP, dbARP},
			q: TraceQuery{Port: "web", Dst: "172.21.0.20", TTL: 1}, action: "drop", reason: "ttl-exceeded"},
		{name: "no arp entry yet", plan: testPlan(false), setup: []func(*testing.T, *topo){webARP},
			q: TraceQuery{Port: "web", Dst: "172.21.0.20", Proto: "udp"}, action: "queued"},
		{name: "gateway", plan: testPlan(false), setup: []func(*testing.T, *topo){webARP},
			q: TraceQuery{Port: "web", Dst: "172.20.0.1"}, action: "local"},
		{name: "ipv6 routed", plan: dualPlan(), setup: []func(*testing.T, *topo){webNS, dbNS},
			q: TraceQuery{Port: "web", Dst: "fd00:21::20", Proto: "udp"}, action: "forward", ports: []string{"back/db"}},
		{name: "ipv6 tcp routed", plan: dualPlan(), setup: []func(*testing.T, *topo){webNS, dbNS},
			q: TraceQuery{Port: "web", Dst: "fd00:21::20", Proto: "tcp", Dport: 5432}, action: "forward", ports: []string{"back/db"}},
		{name: "ipv6 isolated", plan: isolated(dualPlan()), setup: []func(*testing.T, *topo){webNS, dbNS},
			q: TraceQuery{Port: "web", Dst: "fd00:21::20", Proto: "udp"}, action: "drop", reason: "isolated", rule: "isolation"},
		{name: "ipv6 hop limit 1", plan: dualPlan(), setup: []func(*testing.T, *topo){webNS, dbNS},
			q: TraceQuery{Port: "web", Dst: "fd00:21::20", TTL: 1}, action: "drop", reason: "ttl-exceeded"},
		{name: "ipv6 no neighbour entry yet", plan: dualPlan(), setup: []func(*testing.T, *topo){webNS},
			q: TraceQuery{Port: "web", Dst: "fd00:21::20", Proto: "udp"}, action: "queued"},
		{name: "ipv6 gateway", plan: dualPlan(), setup: []func(*testing.T, *topo){webNS},
			q: TraceQuery{Port: "web", Dst: "fd00:20::1"}, action: "local"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := start(t, c.plan)
			for _, s := range c.setup {
				s(t, tp)
			}
			tp.drained()
			before, fdb, conns := tp.drops(), tp.dp.Network("front").Entries(), tp.dp.Tracker().Table.Len()

			res, err := tp.dp.Trace(c.q)
			require.NoError(t, err)
			t.Logf("%s: %v", c.name, res.Verdict)
			for _, s := range res.Steps {
				t.Logf("  %-9s %-14s %s %s %s", s.Kind, s.Where, s.Text, s.Rule, s.Reason)
			}
			require.Equal(t, c.action, res.Verdict.Action)
			require.Equal(t, c.reason, res.Verdict.Reason)
			require.ElementsMatch(t, c.ports, res.Verdict.Ports)
			if c.rule != "" {
				require.True(t, slices.ContainsFunc(res.Steps, func(s trace.Step) bool { return s.Rule == c.rule }), "no step names rule %q", c.rule)
			}
			// the trace changed nothing
			require.Equal(t, before, tp.drops())
			require.Empty(t, tp.drained())
			require.Equal(t, conns, tp.dp.Tracker().Table.Len())
			after := tp.dp.Network("front").Entries()
			require.Equal(t, len(fdb), len(after))

			// now the datapath itself, with the same frame
			frame, err := tp.dp.traceFrame(c.q)
			require.NoError(t, err)
			tp.send(t, c.q.Port, frame)
			got := tp.drained()
			diff := map[string]uint64{}
			for k, n := range tp.drops() {
				if n != before[k] {
					diff[k] = n - before[k]
				}
			}
			switch c.action {
			case "forward":
				require.Empty(t, diff)
				for _, s := range res.Steps {
					if s.Kind != trace.Egress {
						continue
					}
					port := s.Where[strings.IndexByte(s.Where, '/')+1:]
					require.NotEmpty(t, got[port], "nothing left %s", port)
					require.Equal(t, s.Frame, hex.EncodeToString(got[port][0]), "the frame that left %s", port)
					delete(got, port)
				}
				require.Empty(t, got, "frames left other ports")
			case "drop":
				require.Len(t, diff, 1)
				for k, n := range diff {
					require.True(t, strings.HasSuffix(k, "/"+c.reason), "counted %s", k)
					require.EqualValues(t, 1, n)
				}
			case "queued":
				require.Empty(t, diff)
				require.NotEmpty(t, got)
				for _, fs := range got {
					for _, f := range fs {
						require.True(t, isARP(f) || isNS(f), "only ARP requests or solicitations leave while the frame waits")
					}
				}
			case "local":
				require.Empty(t, diff)
				require.Len(t, got["web"], 1, "the gateway answered")
			}
		})
	}
}

// TestTraceReply: --reply traces the answer of the connection the packet
// would make, as if it were made, and that is what the datapath does with
// the answer once the packet has passed.
func TestTraceReply(t *testing.T) {
	for _, c := range []struct {
		name  string
		plan  *config.Plan
		setup []func(*testing.T, *topo)
		dst   string
	}{
		{"IPv4", testPlan(true), []func(*testing.T, *topo){
			func(t *testing.T, tp *topo) {
				tp.send(t, rule.Uplink, arpRequest(t, hostMAC, "10.250.0.1", "10.250.0.2"))
			},
			func(t *testing.T, tp *topo) { tp.send(t, "web", arpRequest(t, webMAC, "172.20.0.10", "172.20.0.1")) },
		}, "10.250.0.1"},
		{"IPv6", isolated(dualPlan()), []func(*testing.T, *topo){hostNS, webNS}, "fd00:ff::1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := start(t, c.plan)
			for _, s := range c.setup {
				s(t, tp)
			}
			tp.drained()
			q := TraceQuery{Port: "web", Dst: c.dst, Proto: "tcp", Dport: 80, Reply: true}
			res, err := tp.dp.Trace(q)
			require.NoError(t, err)
			require.NotNil(t, res.Reply, "%s", res.ReplyError)
			require.Equal(t, []string{"front/web"}, res.Reply.Verdict.Ports, "%+v", res.Reply.Steps)
			require.Zero(t, tp.dp.Tracker().Table.Len(), "no connection made")

			frame, err := tp.dp.traceFrame(q)
			require.NoError(t, err)
			tp.send(t, "web", frame)
			out := tp.drained()["uplink"]
			require.Len(t, out, 1)
			answer, err := trace.Reply(out[0])
			require.NoError(t, err)
			tp.send(t, rule.Uplink, answer)
			back := tp.drained()["web"]
			require.Len(t, back, 1)
			last := res.Reply.Steps[len(res.Reply.Steps)-1]
			require.Equal(t, trace.Egress, last.Kind)
			require.Equal(t, last.Frame, hex.EncodeToString(back[0]))
		})
	}
}

// TestTraceErrors: what cannot be traced says why.
func TestTraceErrors(t *testing.T) {
	tp := start(t, testPlan(false))
	for _, q := range []TraceQuery{
		{Port: "nope", Dst: "172.20.0.11"},
		{Port: "web", Dst: "not-an-ip"},
		{Port: "web", Dst: "172.20.0.11", Proto: "sctp"},
		{Port: "web", Frame: "zz"},
		{Port: "web", Dst: "172.20.0.11", Len: 10},
	} {
		_, err := tp.dp.Trace(q)
		require.Error(t, err, "%+v", q)
	}
}

// TestTraceLive: a live trace follows the real frames that match through
// switch, router and switch while they are forwarded as ever, misses
// those that do not match, and stops.
func TestTraceLive(t *testing.T) {
	tp := start(t, testPlan(false))
	tp.mems["web"].Inject(arpRequest(t, webMAC, "172.20.0.10", "172.20.0.1"))
	tp.mems["db"].Inject(arpRequest(t, dbMAC, "172.21.0.20", "172.21.0.1"))
	tp.recv(t, "web")
	tp.recv(t, "db")
	tp.drained()

	f, err := trace.ParseFilter("udp and host 172.21.0.20")
	require.NoError(t, err)
	l := trace.NewLive("web", "", f, 0)
	stop, err := tp.dp.Follow(l)
	require.NoError(t, err)
	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.20.0.11", 64)) // another host: not followed
	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64))
	var ev trace.Event
	select {
	case ev = <-l.Events:
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	require.Equal(t, "web", ev.Port)
	require.Equal(t, "front", ev.Network)
	require.Equal(t, trace.Verdict{Action: "forward", Ports: []string{"back/db"}}, ev.Verdict, "%+v", ev.Steps)
	require.True(t, slices.ContainsFunc(ev.Steps, func(s trace.Step) bool { return s.Kind == trace.Route }))
	got := tp.recv(t, "db") // and the frame itself went on
	require.NotNil(t, got.Layer(layers.LayerTypeUDP))
	require.Empty(t, l.Events, "the other frame was not followed")

	stop()
	require.Nil(t, tp.dp.live.Load())
	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64))
	tp.recv(t, "db")
	require.Empty(t, l.Events, "stopped")
}

func TestTraceLiveLimits(t *testing.T) {
	tp := start(t, testPlan(false))
	var stops []func()
	for range trace.MaxLive {
		stop, err := tp.dp.Follow(trace.NewLive("", "", trace.Filter{}, 0))
		require.NoError(t, err)
		stops = append(stops, stop)
	}
	_, err := tp.dp.Follow(trace.NewLive("", "", trace.Filter{}, 0))
	require.ErrorIs(t, err, trace.ErrTooManyLive)
	for _, s := range stops {
		s()
	}
	require.Nil(t, tp.dp.live.Load())
}

// TestTraceMalformedFrames: --frame takes any bytes: mutated and cut
// frames are traced (and their replies, when forwarded) without a panic,
// and each ends in a verdict.
func TestTraceMalformedFrames(t *testing.T) {
	tp := start(t, publishedPlan())
	tp.send(t, "web", arpRequest(t, webMAC, "172.20.0.10", "172.20.0.1"))
	tp.send(t, "db", arpRequest(t, dbMAC, "172.21.0.20", "172.21.0.1"))
	tp.send(t, rule.Uplink, arpRequest(t, hostMAC, "10.250.0.1", "10.250.0.2"))
	var seeds [][]byte
	for _, q := range []TraceQuery{
		{Port: "web", Dst: "172.21.0.20", Proto: "tcp", Dport: 80},
		{Port: "web", Dst: "10.250.0.1", Proto: "udp"},
		{Port: "web", Dst: "172.20.0.1"},
		{Port: rule.Uplink, Dst: "10.250.0.2", Proto: "tcp", Dport: 8080},
	} {
		f, err := tp.dp.traceFrame(q)
		require.NoError(t, err)
		seeds = append(seeds, f)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		f := append([]byte(nil), seeds[i%len(seeds)]...)
		for range 1 + rnd.IntN(4) {
			f[rnd.IntN(len(f))] = byte(rnd.IntN(256))
		}
		if rnd.IntN(4) == 0 {
			f = f[:packet.EthernetHeaderLen+rnd.IntN(len(f)-packet.EthernetHeaderLen)]
		}
		port := []string{"web", "db", rule.Uplink}[rnd.IntN(3)]
		res, err := tp.dp.Trace(TraceQuery{Port: port, Frame: hex.EncodeToString(f), Reply: true})
		require.NoError(t, err)
		require.NotEmpty(t, res.Verdict.Action)
	}
	require.Zero(t, tp.dp.Tracker().Table.Len(), "dry: no connection made")
}

// TestTraceLiveMalformedFrames: a live trace follows garbage from the
// devices as the datapath handles it: no panic, an event per frame.
func TestTraceLiveMalformedFrames(t *testing.T) {
	tp := start(t, publishedPlan())
	l := trace.NewLive("", "", trace.Filter{}, 1e6)
	stop, err := tp.dp.Follow(l)
	require.NoError(t, err)
	defer stop()
	tmpl := udp(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 64)
	rnd := rand.New(rand.NewPCG(3, 4))
	const n = 500
	go func() {
		for range n {
			f := append([]byte(nil), tmpl...)
			for range 1 + rnd.IntN(4) {
				f[rnd.IntN(len(f))] = byte(rnd.IntN(256))
			}
			tp.mems["web"].Inject(f)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for i := range n {
		select {
		case ev := <-l.Events:
			require.NotEmpty(t, ev.Verdict.Action)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d frames followed (missed %d)", i, n, l.Missed.Load())
		}
		for range tp.mems["db"].Pending() {
			tp.mems["db"].Recv(time.Millisecond)
		}
	}
}
