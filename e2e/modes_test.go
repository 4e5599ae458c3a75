package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func modesConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[[network]]
name = "one"
subnet = "10.85.1.0/24"

[[network]]
name = "two"
subnet = "10.85.2.0/24"

[[endpoint]]
name = "%[1]s-m"
  [[endpoint.interface]]
  network = "one"
  [[endpoint.interface]]
  network = "two"
  ip = "10.85.2.50"

[[endpoint]]
name = "%[1]s-a"
network = "one"

[[endpoint]]
name = "%[1]s-b"
network = "two"
link = "veth"

[[endpoint]]
name = "%[1]s-n"
mode = "none"

[[endpoint]]
name = "%[1]s-h"
mode = "host"

[[endpoint]]
name = "%[1]s-c"
mode = "container:%[1]s-a"
`, name)
}

func TestModesAndMultiNetwork(t *testing.T) {
	needRoot(t)
	name := prefix("md")
	in := start(t, name, writeConfig(t, modesConfig(name)))
	m, a, b, n, c := name+"-m", name+"-a", name+"-b", name+"-n", name+"-c"

	t.Run("summary lists every mode", func(t *testing.T) {
		require.Eventually(t, func() bool { return strings.Contains(in.stdout.String(), name+"-c ") }, 5*time.Second, 10*time.Millisecond)
		out := in.stdout.String()
		require.Regexp(t, name+`-h\s+host\s+-`, out)
		require.Regexp(t, name+`-c\s+container:`+name+`-a\s+`+name+`-a`, out)
		require.Regexp(t, name+`-m\s+bridge\s+\S+\s+eth1\s+`+name+`-m/eth1\s+two\s+10.85.2.50/24`, out)
	})
	t.Run("none has only lo", func(t *testing.T) {
		out, err := nsExec(n, "ip", "-o", "link", "show")
		require.NoError(t, err, out)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, out)
		require.Contains(t, out, "lo:")
		require.Contains(t, out, "UP")
	})
	t.Run("container shares its target's namespace", func(t *testing.T) {
		out, err := nsExec(c, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		require.NoError(t, err, out)
		require.Contains(t, out, "10.85.1.3/24")
		ping(t, c, "10.85.1.2") // as a: reaches m
	})
	t.Run("a two-network endpoint reaches both sides", func(t *testing.T) {
		ping(t, m, "10.85.1.3")
		ping(t, m, "10.85.2.2")
		ping(t, a, "10.85.1.2")
		ping(t, b, "10.85.2.50")
		noPing(t, a, "10.85.2.2") // the networks stay isolated
		out, err := nsExec(m, "ip", "route")
		require.NoError(t, err)
		require.Contains(t, out, "default via 10.85.1.1 dev eth0")
	})
	require.NoError(t, in.stop())
	for _, ns := range []string{m, a, b, n, c} {
		require.False(t, netnsExists(ns), ns)
	}
}
