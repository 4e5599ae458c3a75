package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runCapture starts cmd (a `uswitch capture`, maybe in a shell pipeline),
// waits until it listens, then has ns ping ip until cmd exits, and returns
// cmd's stdout and stderr.
func runCapture(t *testing.T, cmd *exec.Cmd, ns, ip string) (stdout, stderr string) {
	t.Helper()
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "listening on") },
		10*time.Second, 20*time.Millisecond, "capture did not start:\n%s", errb.String())
	for i := 0; ; i++ {
		select {
		case err := <-exited:
			require.NoError(t, err, "stderr:\n%s", errb.String())
			return out.String(), errb.String()
		default:
		}
		require.Less(t, i, 20, "capture did not end after %d pings:\n%s", i, errb.String())
		ping(t, ns, ip)
	}
}

// TestCapture: `uswitch capture` writes what tcpdump reads, to a file and
// through a pipe.
func TestCapture(t *testing.T) {
	needRoot(t)
	_, err := exec.LookPath("tcpdump")
	require.NoError(t, err, "tcpdump reads the captures (.ci/run installs it)")
	name := prefix("cap")
	cfg := writeConfig(t, l2Config(name)) // a, b (and c) on 10.77.0.0/24
	start(t, name, cfg)
	a, b := name+"-a", name+"-b"
	const ipB = "10.77.0.3"
	ping(t, a, ipB) // ARP is resolved: the captures see ICMP at once

	t.Run("to a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f.pcap")
		cmd := exec.Command(binary, "capture", "--port", a, "-c", "5", "-w", file, "--config", cfg)
		_, stderr := runCapture(t, cmd, a, ipB)
		require.Contains(t, stderr, "listening on port "+a+", link-type EN10MB (Ethernet)")
		require.Contains(t, stderr, "\n5 packets captured\n")

		out, err := exec.Command("tcpdump", "-r", file, "-n").Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Logf("tcpdump stderr: %s", ee.Stderr)
		}
		require.NoError(t, err)
		text := string(out)
		t.Logf("tcpdump -r %s -n:\n%s", file, text)
		require.Contains(t, text, "ICMP echo request", text)
		require.Contains(t, text, "ICMP echo reply", text)
		require.Regexp(t, `IP 10\.77\.0\.2 > 10\.77\.0\.3: ICMP echo request`, text)
		require.Len(t, strings.Split(strings.TrimSpace(text), "\n"), 5, "one line a frame:\n%s", text)
	})

	t.Run("through a pipe", func(t *testing.T) {
		shell := fmt.Sprintf("set -o pipefail; %s capture -c 4 -w - --config %s | tcpdump -r - -n", binary, cfg)
		stdout, stderr := runCapture(t, exec.Command("bash", "-c", shell), b, "10.77.0.2")
		t.Logf("uswitch capture -w - | tcpdump -r - -n:\n%s%s", stdout, stderr)
		require.Contains(t, stderr, "4 packets captured")
		require.Contains(t, stdout, "ICMP echo request", "stdout:\n%s\nstderr:\n%s", stdout, stderr)
		require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 4, stdout)
	})
}
