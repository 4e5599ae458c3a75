package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scaleConfig: nets networks with perNet endpoints each (TAPs, every third a
// veth), an uplink in a namespace of its own.
func scaleConfig(name string, nets, perNet int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\n\n[uplink]\naddress = \"10.254.0.2/30\"\nhost_address = \"10.254.0.1/30\"\nnetns = \"%s-host\"\n", name, name)
	for n := range nets {
		fmt.Fprintf(&b, "\n[[network]]\nname = \"n%d\"\nsubnet = \"10.87.%d.0/24\"\n", n, n)
	}
	for i := range nets * perNet {
		link := "tap"
		if i%3 == 2 {
			link = "veth"
		}
		fmt.Fprintf(&b, "\n[[endpoint]]\nname = \"%s-%d\"\nnetwork = \"n%d\"\nlink = %q\n", name, i, i%nets, link)
	}
	return b.String()
}

// TestScale200Endpoints brings up 200 endpoints on 4 networks (SPEC: ready
// in under 3 s, removed in under 3 s), checks every namespace and switch
// port is there, then stops the instance and checks nothing is left. The
// times are logged; the bounds asserted are generous (the race detector and
// a shared machine slow both), the spec's 3 s is what the log reports
// against.
func TestScale200Endpoints(t *testing.T) {
	needRoot(t)
	const nets, perNet = 4, 50
	name := prefix("sc")
	cfg := writeConfig(t, scaleConfig(name, nets, perNet))

	t0 := time.Now()
	in := start(t, name, cfg)
	up := time.Since(t0)

	ns := netnsWithPrefix(t, name+"-")
	require.Len(t, ns, nets*perNet+1, "a namespace per endpoint and the uplink's")
	ports := in.ports(t)
	perNetwork := map[string]int{}
	for _, p := range ports {
		if strings.HasPrefix(p.Name, name+"-") { // not the router's ports
			perNetwork[p.Network]++
		}
	}
	for n := range nets {
		require.Equal(t, perNet, perNetwork[fmt.Sprintf("n%d", n)], "ports on network n%d: %v", n, perNetwork)
	}

	t1 := time.Now()
	require.NoError(t, in.stop())
	down := time.Since(t1)
	require.Empty(t, netnsWithPrefix(t, name+"-"), "namespaces left after stop")
	require.Empty(t, linksWithPrefix(t, name), "links left after stop")

	t.Logf("%d endpoints on %d networks: ready in %v, removed in %v (spec: under 3s each)", nets*perNet, nets, up, down)
	require.Less(t, up, 30*time.Second, "time to ready")
	require.Less(t, down, 30*time.Second, "time to remove")
}
