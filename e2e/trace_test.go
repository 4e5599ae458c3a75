package e2e

import (
	"context"
	"encoding/json"
	"net"
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
