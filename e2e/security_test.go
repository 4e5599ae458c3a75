package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// secConfig is one network (subnet 10.<octet>.0.0/24, no uplink) with
// three TAP endpoints a (.2), b (.3) and c (.4), port security left at its
// default (on).
func secConfig(name string, octet int) string {
	return fmt.Sprintf(`
name = %[1]q

[[network]]
name = "lan"
subnet = "10.%[2]d.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "lan"

[[endpoint]]
name = "%[1]s-b"
network = "lan"

[[endpoint]]
name = "%[1]s-c"
network = "lan"
`, name, octet)
}

// portDrops returns the drop counters of one port from `uswitch ports -o json`.
func portDrops(t *testing.T, in *instance, port string) map[string]uint64 {
	t.Helper()
	return in.port(t, port).Drops
}

// mustNsExec runs a command inside a namespace and fails the test on error.
func mustNsExec(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := nsExec(ns, args...)
	require.NoError(t, err, "%s in %s:\n%s", strings.Join(args, " "), ns, out)
}

// TestPortSecuritySpoofedSources: an endpoint that sends from an address or
// a MAC that is not its own gets no reply, and `uswitch ports` counts the
// drops on its port by reason; back to its own, it works again.
func TestPortSecuritySpoofedSources(t *testing.T) {
	needRoot(t)
	name := prefix("sec")
	in := start(t, name, writeConfig(t, secConfig(name, 93)))
	a, b := name+"-a", name+"-b"
	const aIP, bIP, bMAC, aMAC = "10.93.0.2", "10.93.0.3", "02:42:0a:5d:00:03", "02:42:0a:5d:00:02"

	ping(t, a, bIP)
	ping(t, b, aIP)
	require.Empty(t, portDrops(t, in, a), "honest traffic is not dropped")

	t.Run("second IP", func(t *testing.T) {
		mustNsExec(t, a, "ip", "addr", "add", "10.93.0.99/24", "dev", "eth0")
		// b's MAC pinned, so the echo request itself (not only a's ARP
		// request from the new address) is what leaves a.
		mustNsExec(t, a, "ip", "neigh", "replace", bIP, "lladdr", bMAC, "dev", "eth0", "nud", "permanent")
		r := mustEcho(t, a, bIP, echoOpts{count: 2, wait: time.Second, source: "10.93.0.99"})
		require.Equal(t, 2, r.sent)
		require.Zero(t, r.received, "ping from a's second address must go unanswered:\n%s", r)
		drops := portDrops(t, in, a)
		require.GreaterOrEqual(t, drops["spoofed-ip"], uint64(2), "both requests dropped; drops of %s: %v", a, drops)
		mustNsExec(t, a, "ip", "addr", "del", "10.93.0.99/24", "dev", "eth0")
		mustNsExec(t, a, "ip", "neigh", "del", bIP, "dev", "eth0")
		ping(t, a, bIP)
	})

	t.Run("changed MAC", func(t *testing.T) {
		before := portDrops(t, in, a)["port-security"]
		mustNsExec(t, a, "ip", "link", "set", "dev", "eth0", "address", "02:00:00:00:00:99")
		noPing(t, a, bIP)
		drops := portDrops(t, in, a)
		require.Greater(t, drops["port-security"], before, "drops of %s: %v", a, drops)
		mustNsExec(t, a, "ip", "link", "set", "dev", "eth0", "address", aMAC)
		ping(t, a, bIP)
		ping(t, b, aIP)
	})
}

// TestDeletedNamespaceLeavesOthersWorking deletes an endpoint's namespace
// from outside while the instance runs: the others keep talking, and the
// instance still stops and cleans up without an error.
func TestDeletedNamespaceLeavesOthersWorking(t *testing.T) {
	needRoot(t)
	name := prefix("del")
	in := start(t, name, writeConfig(t, secConfig(name, 94)))
	a, b, c := name+"-a", name+"-b", name+"-c"
	ping(t, a, "10.94.0.3")
	ping(t, a, "10.94.0.4")
	ping(t, c, "10.94.0.3")

	out, err := exec.Command("ip", "netns", "del", c).CombinedOutput()
	require.NoError(t, err, "ip netns del %s: %s", c, out)
	// The TAP vanished with the namespace: its port is detached.
	require.Eventually(t, func() bool {
		out, err := in.cli("ports", "-o", "json")
		return err == nil && !strings.Contains(out, `"`+c+`"`)
	}, 5*time.Second, 100*time.Millisecond, "port %s still listed", c)
	// With c's port gone, the others still talk.
	ping(t, a, "10.94.0.3")
	ping(t, b, "10.94.0.2")

	require.NoError(t, in.stop(), "uswitch exits cleanly after losing a namespace")
	stderr := in.stderr.String()
	require.Contains(t, stderr, "removed everything this run made", stderr)
	require.NotContains(t, stderr, "teardown", stderr)
	for _, ns := range []string{a, b, c} {
		require.False(t, netnsExists(ns), "netns %s left behind", ns)
	}
	require.Empty(t, linksWithPrefix(t, name))
}

// TestSecondRunSameNameRefused: a second `uswitch run` of a running
// instance's config exits at once with an error, touching nothing; the
// first keeps working.
func TestSecondRunSameNameRefused(t *testing.T) {
	needRoot(t)
	name := prefix("2nd")
	cfg := writeConfig(t, secConfig(name, 95))
	start(t, name, cfg)
	ping(t, name+"-a", "10.95.0.3")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, binary, "run", "--config", cfg).CombinedOutput()
	took := time.Since(t0)
	require.Error(t, err, "the second run must fail:\n%s", out)
	require.NoError(t, ctx.Err(), "the second run must exit by itself, not be killed:\n%s", out)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.NotZero(t, ee.ExitCode())
	require.Contains(t, string(out), "already running")
	require.Less(t, took, 10*time.Second)

	ping(t, name+"-a", "10.95.0.3")
	ping(t, name+"-b", "10.95.0.4")
}
