package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
)

// l3Config: networks front and back (isolated unless open), an internal
// network, one endpoint on each, and an uplink whose host side lives in a
// namespace of the test's own (uswitch creates it and removes it).
func l3Config(name string, open bool) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.251.0.2/30"
host_address = "10.251.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.80.0.0/24"
isolate = %[2]v

[[network]]
name = "back"
subnet = "10.81.0.0/24"
isolate = %[2]v

[[network]]
name = "priv"
subnet = "10.82.0.0/24"
internal = true

[[endpoint]]
name = "%[1]s-f"
network = "front"

[[endpoint]]
name = "%[1]s-b"
network = "back"
link = "veth"

[[endpoint]]
name = "%[1]s-p"
network = "priv"
`, name, !open)
}

func TestL3IsolatedNetworksAndUplink(t *testing.T) {
	needRoot(t)
	name := prefix("l3")
	in := start(t, name, writeConfig(t, l3Config(name, false)))
	f, b, p, host := name+"-f", name+"-b", name+"-p", name+"-host"

	t.Run("endpoints ping their gateway", func(t *testing.T) {
		ping(t, f, "10.80.0.1")
		ping(t, b, "10.81.0.1")
		ping(t, p, "10.82.0.1")
	})
	t.Run("isolated networks do not reach each other", func(t *testing.T) {
		noPing(t, f, "10.81.0.2")
		noPing(t, b, "10.80.0.2")
	})
	t.Run("endpoints reach the host side", func(t *testing.T) {
		ping(t, f, "10.251.0.1")
		ping(t, b, "10.251.0.1")
	})
	t.Run("the host side reaches endpoints by IP", func(t *testing.T) {
		ping(t, host, "10.80.0.2")
		ping(t, host, "10.81.0.2")
		l := listen(t, f, "10.80.0.2:7000")
		got := make(chan string, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
			got <- ""
		}()
		c := dial(t, host, "10.80.0.2:7000")
		b, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Contains(t, string(b), "10.251.0.1:", "the server sees the host's own address: no NAT")
		require.Empty(t, <-got)
	})
	t.Run("TTL 1 probe gets time exceeded from the gateway", func(t *testing.T) {
		r := mustEcho(t, f, "10.251.0.1", echoOpts{count: 1, ttl: 1})
		require.Zero(t, r.received, "a TTL 1 request must not reach the host side:\n%s", r)
		require.Equal(t, []icmpError{{from: "10.80.0.1", typ: ipv4.ICMPTypeTimeExceeded, code: 0, seq: 1}}, r.errors,
			"time exceeded in transit, from the gateway:\n%s", r)
	})
	t.Run("internal network has no way out", func(t *testing.T) {
		noPing(t, p, "10.251.0.1")
		noPing(t, host, "10.82.0.2")
		out, err := nsExec(host, "ip", "route")
		require.NoError(t, err)
		require.Contains(t, out, "10.80.0.0/24 via 10.251.0.2")
		require.NotContains(t, out, "10.82.0.0/24")
	})
	t.Run("neigh, routes and ports show it", func(t *testing.T) {
		out, err := in.cli("neigh", "-o", "json")
		require.NoError(t, err)
		require.Contains(t, out, `"10.80.0.2"`)
		require.Contains(t, out, `"10.251.0.1"`)
		out, err = in.cli("routes", "-o", "json")
		require.NoError(t, err)
		var routes []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &routes))
		require.Equal(t, "0.0.0.0/0", routes[len(routes)-1]["dst"])
		out, err = in.cli("ports", "-o", "json")
		require.NoError(t, err)
		require.Contains(t, out, `"isolated"`)
		require.Contains(t, out, `"uplink"`)
	})
	require.NoError(t, in.stop())
	require.False(t, netnsExists(host), "the uplink namespace uswitch made is removed")
}

func TestL3OpenNetworksRoute(t *testing.T) {
	needRoot(t)
	name := prefix("l3o")
	start(t, name, writeConfig(t, l3Config(name, true)))
	f, b := name+"-f", name+"-b"
	r := mustEcho(t, f, "10.81.0.2", echoOpts{count: 2})
	require.Zero(t, r.loss(), r.String())
	require.Equal(t, []int{63, 63}, r.ttls, "one router hop:\n%s", r)
	ping(t, b, "10.80.0.2")

	// a TCP transfer across the router
	l := listen(t, b, "10.81.0.2:7001")
	done := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c := dial(t, f, "10.81.0.2:7001")
	buf := make([]byte, 1<<20)
	for range 4 {
		_, err := c.Write(buf)
		require.NoError(t, err)
	}
	c.Close()
	require.EqualValues(t, 4<<20, <-done)
}
