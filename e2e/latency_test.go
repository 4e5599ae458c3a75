package e2e

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fdsTo counts the descriptors of process pid that point at target (as
// /proc/PID/fd's links read: a path, or "anon_inode:[io_uring]").
func fdsTo(t *testing.T, pid int, target string) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == target {
			n++
		}
	}
	return n
}

// holdsCPULatency reports whether process pid has /dev/cpu_dma_latency
// open: the busy-poll thread's CPU latency request.
func holdsCPULatency(t *testing.T, pid int) bool {
	t.Helper()
	return fdsTo(t, pid, "/dev/cpu_dma_latency") > 0
}

// TestCPULatencyOptIn runs TCP through the busy-poll thread of a real
// instance and watches whether it holds the CPU latency request: never by
// default, while traffic flows with [defaults] cpu_latency = true, and
// never without busy polling or when --cpu-latency=false overrides that
// key. The ready line says which settings the run took, from the config
// or from the flags that override it.
func TestCPULatencyOptIn(t *testing.T) {
	needRoot(t)
	for _, c := range []struct {
		name     string
		defaults string
		flags    []string
		held     bool
		ready    string
	}{
		{"default", "", nil, false, "busy_poll=true cpu_latency=false"},
		{"config", "cpu_latency = true", nil, true, "busy_poll=true cpu_latency=true"},
		{"no-busy-poll", "busy_poll = false\ncpu_latency = true", nil, false, "busy_poll=false cpu_latency=true"},
		{"flag-overrides-config", "cpu_latency = true\nbusy_poll = false", []string{"--cpu-latency=false", "--busy-poll"}, false, "busy_poll=true cpu_latency=false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := prefix("cl")
			cfg := writeConfig(t, fmt.Sprintf(`
name = %[1]q

[defaults]
%[2]s

[[network]]
name = "one"
subnet = "10.88.1.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "one"

[[endpoint]]
name = "%[1]s-b"
network = "one"
link = "veth"
`, name, c.defaults))
			in := start(t, name, cfg, c.flags...)
			require.Contains(t, in.stderr.String(), c.ready)

			l := listen(t, name+"-b", "10.88.1.3:5001")
			go func() {
				if s, err := l.Accept(); err == nil {
					io.Copy(io.Discard, s)
					s.Close()
				}
			}()
			conn := dial(t, name+"-a", "10.88.1.3:5001")
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := conn.Write(buf); err != nil {
						done <- err
						return
					}
				}
			}()
			held := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !held; {
				held = holdsCPULatency(t, in.cmd.Process.Pid)
				time.Sleep(time.Millisecond)
			}
			close(stop)
			require.NoError(t, <-done, "the transfer failed")
			require.Equal(t, c.held, held, "CPU latency request held while traffic flowed")
		})
	}
}
