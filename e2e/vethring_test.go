package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/tap"
)

// vethRingConfig: lan with three veth endpoints (b only with withB), with
// offloads, so the packet sockets carry super-frames with vnet headers.
func vethRingConfig(name string, withB bool) string {
	s := fmt.Sprintf(`
name = %[1]q

[defaults]
offload = true

[[network]]
name = "lan"
subnet = "10.87.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "lan"
link = "veth"
ip = "10.87.0.2"

[[endpoint]]
name = "%[1]s-c"
network = "lan"
link = "veth"
ip = "10.87.0.4"
`, name)
	if withB {
		s += fmt.Sprintf(`
[[endpoint]]
name = "%[1]s-b"
network = "lan"
link = "veth"
ip = "10.87.0.3"
`, name)
	}
	return s
}

// rings counts the receive rings the process pid has mapped: packet
// socket mappings of tap.RingBytes.
func rings(t *testing.T, pid int) int {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	require.NoError(t, err)
	n := 0
	for _, l := range strings.Split(string(maps), "\n") {
		var lo, hi uint64
		if _, err := fmt.Sscanf(l, "%x-%x", &lo, &hi); err == nil && hi-lo == tap.RingBytes && strings.Contains(l, "socket:") {
			n++
		}
	}
	return n
}

// TestVethRing runs veth endpoints read through receive rings (the
// default), with the busy-poll thread lending ring slots to the datapath
// and with reader goroutines: ping, UDP and TCP both ways (the TCP as
// super-frames, too large for a slot), a port detached and attached again
// by apply, and an endpoint's namespace deleted under its running port.
func TestVethRing(t *testing.T) {
	needRoot(t)
	for _, busy := range []bool{true, false} {
		t.Run(fmt.Sprintf("busy-poll=%t", busy), func(t *testing.T) {
			name := prefix("vr")
			in := start(t, name, writeConfig(t, vethRingConfig(name, true)), fmt.Sprintf("--busy-poll=%t", busy))
			a, b, c := name+"-a", name+"-b", name+"-c"
			require.Equal(t, 3, rings(t, in.cmd.Process.Pid), "receive rings mapped")
			ping(t, a, "10.87.0.3")
			matrixServe(t, b)
			require.NoError(t, probeUDP(a, "10.87.0.3", 4*time.Second))
			const size = 8 << 20
			carry(t, a, b, "10.87.0.3:5001", "10.87.0.3:5001", size)
			carry(t, b, a, "10.87.0.2:5002", "10.87.0.2:5002", size)
			for _, ns := range []string{a, b} {
				require.Zero(t, tcpCsumErrors(t, ns), "TCP checksum errors in %s", ns)
				p := in.port(t, ns)
				require.NotZero(t, p.RxPackets, "%s's port read nothing", ns)
				// A super-frame is cut short only when the socket's queue
				// is full (uswitch kept off the CPUs): counted, TCP resends.
				require.Zero(t, p.Drops["ring-malformed"], "%s's ring: %v", ns, p.Drops)
				t.Logf("%s: %d frames read, drops %v", ns, p.RxPackets, p.Drops)
			}

			// b detached (its port and ring go) and attached again.
			apply := func(withB bool) {
				out, err := exec.Command(binary, "apply", "--config", writeConfig(t, vethRingConfig(name, withB))).CombinedOutput()
				require.NoError(t, err, string(out))
			}
			apply(false)
			require.Eventually(t, func() bool { return rings(t, in.cmd.Process.Pid) == 2 }, 10*time.Second, 50*time.Millisecond, "b's ring unmapped")
			apply(true)
			require.Equal(t, 3, rings(t, in.cmd.Process.Pid), "b's ring again")
			ping(t, a, "10.87.0.3")
			matrixServe(t, b)
			require.NoError(t, probeUDP(a, "10.87.0.3", 4*time.Second))
			carry(t, a, b, "10.87.0.3:5003", "10.87.0.3:5003", size)

			// b's namespace deleted under its running port: the port is
			// detached (its ring unmapped), the others go on.
			out, err := exec.Command("ip", "netns", "del", b).CombinedOutput()
			require.NoError(t, err, string(out))
			require.Eventually(t, func() bool { return rings(t, in.cmd.Process.Pid) == 2 }, 10*time.Second, 50*time.Millisecond, "b's ring unmapped")
			require.True(t, in.running())
			ping(t, a, "10.87.0.4")
			carry(t, c, a, "10.87.0.2:5004", "10.87.0.2:5004", size)
		})
	}
}
