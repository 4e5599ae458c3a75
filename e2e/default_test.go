package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDefaultTopology runs what `make run` runs: `uswitch run` with no
// config. Its names are fixed (demo-*): a demo instance running here fails
// the test, which must not touch it.
func TestDefaultTopology(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/run/uswitch/demo.sock"); err == nil || netnsExists("demo-a") {
		t.Fatal("a demo instance (`uswitch run` of the embedded default topology, names demo-*) is running on this machine: " +
			"this test runs the same topology; stop the demo (Ctrl-C, or `uswitch down`) and run the tests again")
	}
	in := start(t, "demo", "")
	// stdout is copied from a pipe: the summary may trail the `ready` log
	require.Eventually(t, func() bool { return strings.Contains(in.stdout.String(), "demo-db ") }, 5*time.Second, 10*time.Millisecond)
	out := in.stdout.String()
	require.Contains(t, out, "running the embedded default topology")
	require.Contains(t, out, "ENDPOINT")
	for _, ep := range []string{"demo-a", "demo-b", "demo-c", "demo-db"} {
		require.Contains(t, out, ep)
	}

	ping(t, "demo-a", "172.29.0.3")    // TAP to TAP through the switch
	ping(t, "demo-b", "172.29.0.4")    // TAP to veth
	ping(t, "demo-c", "172.29.0.1")    // the gateway
	ping(t, "demo-host", "172.29.0.2") // the host side, through the uplink
	ping(t, "demo-host", "172.30.0.2")
	noPing(t, "demo-a", "172.30.0.2") // bridge is isolated from backend

	fdb, err := in.cli("fdb")
	require.NoError(t, err)
	require.Contains(t, fdb, "02:42:ac:1d:00:02")
	routes, err := in.cli("routes")
	require.NoError(t, err)
	require.True(t, strings.Contains(routes, "default") && strings.Contains(routes, "10.250.0.1"), routes)

	require.NoError(t, in.stop())
	require.False(t, netnsExists("demo-a"))
	require.False(t, netnsExists("demo-host"))
}
