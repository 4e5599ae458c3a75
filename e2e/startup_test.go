package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startupConfig: an uplink in a namespace of its own, two networks and n
// endpoints spread over them (TAPs and veths), enough that building the
// topology takes a while.
func startupConfig(name string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
name = %[1]q

[uplink]
address = "10.254.0.2/30"
host_address = "10.254.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "one"
subnet = "10.86.1.0/24"

[[network]]
name = "two"
subnet = "10.86.2.0/24"
isolate = false
`, name)
	for i := range n {
		link := "tap"
		if i%3 == 2 {
			link = "veth"
		}
		fmt.Fprintf(&b, "\n[[endpoint]]\nname = \"%s-e%d\"\nnetwork = %q\nlink = %q\n", name, i, []string{"one", "two"}[i%2], link)
	}
	return b.String()
}

// netnsWithPrefix lists the named namespaces whose name starts with p.
func netnsWithPrefix(t *testing.T, p string) []string {
	t.Helper()
	ents, err := os.ReadDir("/var/run/netns")
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), p) {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestStartupInterruptedCleansUp sends SIGTERM to `uswitch run` while it is
// still building a 12-endpoint topology, at several points of the build:
// every time it exits by itself, leaves no namespace, link, state file or
// socket of the instance behind, and `uswitch down` finds nothing to do.
func TestStartupInterruptedCleansUp(t *testing.T) {
	needRoot(t)
	name := prefix("su")
	cfg := writeConfig(t, startupConfig(name, 12))
	state := filepath.Join("/run/uswitch", name+".json")
	sock := filepath.Join("/run/uswitch", name+".sock")
	t.Cleanup(func() {
		// Whatever happened above, leave nothing behind.
		_ = exec.Command(binary, "down", "--config", cfg).Run()
	})

	var interrupted int
	for _, delay := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond,
		200 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			var stderr lockedBuffer
			cmd := exec.Command(binary, "run", "--config", cfg)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
			pr, pw := io.Pipe()
			cmd.Stderr = io.MultiWriter(&stderr, pw)
			require.NoError(t, cmd.Start())
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(pr)
				for sc.Scan() {
					if strings.Contains(sc.Text(), "msg=ready") {
						close(ready)
					}
				}
			}()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait(); pw.Close() }()

			time.Sleep(delay)
			wasReady := true
			select {
			case <-ready:
			default:
				wasReady = false
				interrupted++
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			select {
			case err := <-exited:
				// An interrupted start-up may report the interruption as
				// its error; what matters is that it exits and cleans up.
				t.Logf("exit after SIGTERM at %v (ready before it: %v): %v", delay, wasReady, err)
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("uswitch run did not exit within 30s of SIGTERM\nstderr:\n%s", stderr.String())
			}
			require.NotContains(t, stderr.String(), "teardown", stderr.String())
			require.NotContains(t, stderr.String(), "panic", stderr.String())

			require.Empty(t, netnsWithPrefix(t, name), "namespaces left behind\nstderr:\n%s", stderr.String())
			require.Empty(t, linksWithPrefix(t, name), "links left behind\nstderr:\n%s", stderr.String())
			require.NoFileExists(t, state, "state file left behind")
			require.NoFileExists(t, sock, "control socket left behind")
			out, err := exec.Command(binary, "down", "--config", cfg).CombinedOutput()
			require.NoError(t, err, "uswitch down: %s", out)
			require.Empty(t, strings.TrimSpace(string(out)), "uswitch down had something to do")
			require.Empty(t, netnsWithPrefix(t, name))
		})
	}
	require.Positive(t, interrupted, "no SIGTERM arrived before ready: the delays are too long for this machine")
}
