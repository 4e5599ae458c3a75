package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/trace"
)

// traceJSON runs `uswitch trace ARGS -o json` against in.
func traceJSON(t *testing.T, in *instance, args ...string) datapath.TraceResult {
	t.Helper()
	out, err := in.cli(append(append([]string{"trace"}, args...), "-o", "json")...)
	require.NoError(t, err)
	var res datapath.TraceResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	return res
}

// ruleStep returns the step naming rule, if any.
func ruleStep(res datapath.TraceResult, rule func(string) bool) (trace.Step, bool) {
	i := slices.IndexFunc(res.Steps, func(s trace.Step) bool { return s.Rule != "" && rule(s.Rule) })
	if i < 0 {
		return trace.Step{}, false
	}
	return res.Steps[i], true
}

// TestTrace: against a real `uswitch run`, the trace of a blocked packet
// names what blocked it (isolation, a [[rule]] reject) and the datapath
// then blocks the real packet for that reason; the trace of a masqueraded
// connection shows the NAT and its reply coming back, and that is what
// happens to a real connection.
func TestTrace(t *testing.T) {
	needRoot(t)
	name := prefix("trc")
	in := start(t, name, writeConfig(t, natConfig(name)))
	f, host := name+"-f", name+"-host"

	t.Run("isolation", func(t *testing.T) {
		res := traceJSON(t, in, "--port", f, "--dst", "10.84.0.2", "--proto", "tcp", "--dport", "80")
		require.Equal(t, trace.Verdict{Action: "drop", Reason: "isolated"}, res.Verdict, "%+v", res.Steps)
		s, ok := ruleStep(res, func(r string) bool { return r == "isolation" })
		require.True(t, ok, "no step names the isolation rule: %+v", res.Steps)
		require.Equal(t, "forward", s.Where)
		table, err := in.cli("trace", "--port", f, "--dst", "10.84.0.2", "--proto", "tcp", "--dport", "80")
		require.NoError(t, err)
		require.Contains(t, table, "[rule: isolation]")
		require.Contains(t, table, "verdict: drop (isolated)")

		// the real packet meets the same fate
		before := in.port(t, "gw/front").Drops["isolated"]
		require.Error(t, tryDial(t, f, "10.84.0.2:80", time.Second))
		require.Greater(t, in.port(t, "gw/front").Drops["isolated"], before, "the SYN was not dropped as isolated")
	})

	t.Run("rule reject", func(t *testing.T) {
		res := traceJSON(t, in, "--port", f, "--dst", "10.252.0.1", "--proto", "tcp", "--dport", "9999")
		require.Equal(t, trace.Verdict{Action: "drop", Reason: "filtered"}, res.Verdict, "%+v", res.Steps)
		_, ok := ruleStep(res, func(r string) bool { return strings.HasPrefix(r, "rule line ") })
		require.True(t, ok, "no step names the [[rule]]: %+v", res.Steps)
		require.True(t, slices.ContainsFunc(res.Steps, func(s trace.Step) bool { return s.Kind == trace.Send }), "the reject answers")
		serveTCP(t, host, "10.252.0.1:9999")
		require.ErrorContains(t, tryDial(t, f, "10.252.0.1:9999", 3*time.Second), "refused", "the rule's reset")
	})

	t.Run("masquerade and reply", func(t *testing.T) {
		serveTCP(t, host, "10.252.0.1:9000")
		require.Equal(t, "10.252.0.2", clientAddr(t, f, "10.252.0.1:9000")) // the host's MAC is now known
		res := traceJSON(t, in, "--port", f, "--dst", "10.252.0.1", "--proto", "tcp", "--dport", "9000", "--sport", "41000", "--reply")
		require.Equal(t, trace.Verdict{Action: "forward", Ports: []string{"uplink"}}, res.Verdict, "%+v", res.Steps)
		_, ok := ruleStep(res, func(r string) bool { return r == "masquerade front" })
		require.True(t, ok, "%+v", res.Steps)
		last := res.Steps[len(res.Steps)-1]
		require.Contains(t, last.Text, "10.252.0.2:41000 > 10.252.0.1:9000 tcp [S]")
		require.NotNil(t, res.Reply)
		require.Equal(t, []string{"front/" + f}, res.Reply.Verdict.Ports, "%+v", res.Reply.Steps)
		rl := res.Reply.Steps[len(res.Reply.Steps)-1]
		require.Contains(t, rl.Text, "10.252.0.1:9000 > 10.83.0.2:41000 tcp [SA]")
	})
}

// tryDial dials addr over TCP from ns and reports the error, if any.
func tryDial(t *testing.T, ns, addr string, timeout time.Duration) error {
	t.Helper()
	var err error
	inNetns(t, ns, func() {
		var c net.Conn
		d := net.Dialer{Timeout: timeout}
		if c, err = d.DialContext(context.Background(), "tcp4", addr); err == nil {
			c.Close()
		}
	})
	return err
}

// traceLiveConfig: front with f and back with b, dual-stack, not isolated,
// both masqueraded to an uplink whose host side is a namespace uswitch
// makes.
func traceLiveConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.0.2/30"
host_address = "10.253.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.85.0.0/24"
subnet6 = "fd00:85::/64"
isolate = false

[[network]]
name = "back"
subnet = "10.86.0.0/24"
subnet6 = "fd00:86::/64"
isolate = false

[[endpoint]]
name = "%[1]s-f"
network = "front"
ip6 = "fd00:85::10"

[[endpoint]]
name = "%[1]s-b"
network = "back"
ip6 = "fd00:86::20"
`, name)
}

// followLive runs `uswitch trace --live ARGS -o json` and pings dst from ns
// (one echo at a time, with the harness's Go ICMP or ICMPv6 probe) until the live
// trace has printed want events or 30 s passed; it returns the events.
func followLive(t *testing.T, in *instance, ns, dst string, want int, args ...string) []trace.Event {
	t.Helper()
	args = append(append([]string{"trace", "--live", "-o", "json", "-c", fmt.Sprint(want)}, args...), in.configArgs()...)
	cmd := exec.Command(binary, args...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	events := make(chan trace.Event, want)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var ev trace.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	var got []trace.Event
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				require.Len(t, got, want, "trace --live ended early: %s", stderr.String())
				return got
			}
			got = append(got, ev)
		case <-time.After(200 * time.Millisecond):
			if strings.Contains(dst, ":") {
				echo6(t, ns, dst, 1)
			} else {
				mustEcho(t, ns, dst, echoOpts{count: 1, wait: time.Second})
			}
		case <-deadline:
			t.Fatalf("trace --live printed %d of %d events in 30 s: %s", len(got), want, stderr.String())
		}
	}
}

// hasStep reports whether ev has a step of kind whose text contains text.
func hasStep(ev trace.Event, kind, text string) bool {
	return slices.ContainsFunc(ev.Steps, func(s trace.Step) bool { return s.Kind == kind && strings.Contains(s.Text, text) })
}

// TestTraceLive: `trace --live` follows a real ping step by step: through
// two networks (front to back and the reply back), and through the
// masquerade to the uplink's host side and back, translated both ways.
func TestTraceLive(t *testing.T) {
	needRoot(t)
	name := prefix("trl")
	in := start(t, name, writeConfig(t, traceLiveConfig(name)))
	f, b := name+"-f", name+"-b"
	ping(t, f, "10.86.0.2") // neighbours known: the followed pings are forwarded at once
	ping(t, f, "10.253.0.1")

	t.Run("two networks", func(t *testing.T) {
		evs := followLive(t, in, f, "10.86.0.2", 4, "--match", "icmp and host 10.86.0.2")
		var request, reply bool
		for _, ev := range evs {
			switch {
			case ev.Port == f && ev.Network == "front":
				require.Equal(t, []string{"back/" + b}, ev.Verdict.Ports, "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.Route, "10.86.0.2 via gw/back"), "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.FDB, "is on port "+b), "%+v", ev.Steps)
				request = true
			case ev.Port == b && ev.Network == "back":
				require.Equal(t, []string{"front/" + f}, ev.Verdict.Ports, "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.Conntrack, "ESTABLISHED"), "%+v", ev.Steps)
				reply = true
			default:
				t.Fatalf("an event from %s/%s", ev.Network, ev.Port)
			}
		}
		require.True(t, request && reply, "requests and replies both followed")
	})

	// IPv6 as IPv4 (SPEC §6): the icmp6, ip6 and host terms select the
	// echoes; the neighbour discovery that icmp6 also matches is skipped
	t.Run("ipv6 two networks", func(t *testing.T) {
		require.Equal(t, 2, echo6(t, f, "fd00:86::20", 2), "ping6 before following")
		evs := followLive(t, in, f, "fd00:86::20", 6, "--match", "ip6 and icmp6 and host fd00:86::20")
		var request, reply bool
		for _, ev := range evs {
			switch {
			case ev.Port == f && ev.Network == "front" && hasStep(ev, trace.Egress, "fd00:85::10 > fd00:86::20 icmp6 type 128"):
				require.Equal(t, []string{"back/" + b}, ev.Verdict.Ports, "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.FDB, "is on port "+b), "%+v", ev.Steps)
				request = true
			case ev.Port == b && ev.Network == "back" && hasStep(ev, trace.Egress, "fd00:86::20 > fd00:85::10 icmp6 type 129"):
				require.Equal(t, []string{"front/" + f}, ev.Verdict.Ports, "%+v", ev.Steps)
				reply = true
			case ev.Port != f && ev.Port != b:
				t.Fatalf("an event from %s/%s", ev.Network, ev.Port)
			}
		}
		require.True(t, request && reply, "requests and replies both followed: %+v", evs)
	})

	t.Run("masquerade", func(t *testing.T) {
		evs := followLive(t, in, f, "10.253.0.1", 4, "--match", "icmp and host 10.253.0.1")
		var request, reply bool
		for _, ev := range evs {
			switch ev.Port {
			case f:
				require.Equal(t, []string{"uplink"}, ev.Verdict.Ports, "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.Egress, "IPv4 10.253.0.2 > 10.253.0.1 icmp type 8"), "translated: %+v", ev.Steps)
				request = true
			case "uplink":
				require.Equal(t, []string{"front/" + f}, ev.Verdict.Ports, "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.NAT, "-> 10.85.0.2"), "%+v", ev.Steps)
				require.True(t, hasStep(ev, trace.Egress, "IPv4 10.253.0.1 > 10.85.0.2 icmp type 0"), "%+v", ev.Steps)
				reply = true
			default:
				t.Fatalf("an event from %s/%s", ev.Network, ev.Port)
			}
		}
		require.True(t, request && reply, "requests and replies both followed")
	})
}
