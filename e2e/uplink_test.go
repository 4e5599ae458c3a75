package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// After the uplink's host-side link goes down and up, which flushes the
// routes through it, the host reaches the networks again: uswitch watches
// the link and puts its routes back.
func TestUplinkDownUpRestoresRoutes(t *testing.T) {
	needRoot(t)
	name := prefix("upfl")
	start(t, name, writeConfig(t, fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.254.0.2/30"
host_address = "10.254.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.95.0.0/24"

[[network]]
name = "back"
subnet = "10.96.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "front"
ip = "10.95.0.10"

[[endpoint]]
name = "%[1]s-b"
network = "back"
ip = "10.96.0.10"
`, name)))
	hostNS, dev := name+"-host", name+"-up"
	whoServer(listen(t, name+"-a", ":7100"))
	whoServer(listen(t, name+"-b", ":7100"))
	reach := func() {
		t.Helper()
		require.Equal(t, "10.254.0.1 hello\n", exchange(t, hostNS, "10.95.0.10:7100"))
		require.Equal(t, "10.254.0.1 hello\n", exchange(t, hostNS, "10.96.0.10:7100"))
	}
	reach()

	// Route events of the host's namespace, to wait on.
	ns, err := nsthread.Open(hostNS)
	require.NoError(t, err)
	defer ns.Close()
	routes := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	require.NoError(t, netlink.RouteSubscribeAt(ns, routes, done))

	for _, state := range []string{"down", "up"} {
		out, err := exec.Command("ip", "-n", hostNS, "link", "set", dev, state).CombinedOutput()
		require.NoError(t, err, "ip link set %s %s: %s", dev, state, out)
	}
	restored := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(restored) < 2 {
		select {
		case u := <-routes:
			if u.Type == 0x18 /* RTM_NEWROUTE */ && u.Dst != nil && u.Gw.Equal(net.ParseIP("10.254.0.2")) {
				restored[u.Dst.String()] = true
			}
		case <-timeout:
			t.Fatalf("routes restored after the uplink came back: %v, want 10.95.0.0/24 and 10.96.0.0/24", restored)
		}
	}
	require.Equal(t, map[string]bool{"10.95.0.0/24": true, "10.96.0.0/24": true}, restored)
	reach()
}
