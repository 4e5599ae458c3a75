package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNotifyReadyStopping runs `uswitch run` as systemd runs a Type=notify
// service, with NOTIFY_SOCKET naming a datagram socket of the test's own:
// READY=1 (with a STATUS=) arrives once it is ready, STOPPING=1 when
// SIGTERM starts the teardown, and the clean exit removes the lock file.
func TestNotifyReadyStopping(t *testing.T) {
	needRoot(t)
	name := prefix("sd")
	cfg := writeConfig(t, `
name = "`+name+`"

[[network]]
name = "one"
subnet = "10.87.1.0/24"

[[endpoint]]
name = "`+name+`-a"
network = "one"
`)
	addr := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	recv := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		n, err := c.Read(buf)
		require.NoError(t, err, "no notification")
		return string(buf[:n])
	}
	t.Setenv("NOTIFY_SOCKET", addr) // inherited by the uswitch that start runs

	in := start(t, name, cfg, "--log-level", "debug")
	msg := recv()
	lines := strings.Split(strings.TrimSuffix(msg, "\n"), "\n")
	require.Equal(t, "READY=1", lines[0], msg)
	require.Len(t, lines, 2, msg)
	require.True(t, strings.HasPrefix(lines[1], "STATUS=forwarding: instance "+name), msg)
	lock := filepath.Join("/run/uswitch", name+".lock")
	require.FileExists(t, lock)

	require.NoError(t, in.stop())
	msg = recv()
	require.True(t, strings.HasPrefix(msg, "STOPPING=1\n"), msg)
	_, err = os.Stat(lock)
	require.True(t, os.IsNotExist(err), "the lock file outlives a clean exit: %v", err)
	require.Contains(t, in.stderr.String(), "msg=stopping")
}

// TestRunLogJSON runs `uswitch run --log-format json --log-level debug`:
// every line on stderr is one JSON object, "ready" among them with the
// instance's name, and SIGTERM ends it cleanly.
func TestRunLogJSON(t *testing.T) {
	needRoot(t)
	name := prefix("lj")
	cfg := writeConfig(t, `
name = "`+name+`"

[[network]]
name = "one"
subnet = "10.87.2.0/24"

[[endpoint]]
name = "`+name+`-a"
network = "one"
`)
	cmd := exec.Command(binary, "run", "--config", cfg, "--log-format", "json", "--log-level", "debug")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = exec.Command(binary, "down", "--config", cfg).Run()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	ready := false
	timeout := time.After(60 * time.Second)
	for !ready {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "uswitch run exited before ready")
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON log line: %s", line)
			require.Contains(t, rec, "level")
			ready = rec["msg"] == "ready"
			if ready {
				require.Equal(t, name, rec["instance"])
			}
		case <-timeout:
			t.Fatal("uswitch run not ready after 60s")
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	var last map[string]any
	for line := range lines {
		require.NoError(t, json.Unmarshal([]byte(line), &last), "not a JSON log line: %s", line)
	}
	require.NoError(t, cmd.Wait())
	require.Equal(t, "removed everything this run made", last["msg"])
}
