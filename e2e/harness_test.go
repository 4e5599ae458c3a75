package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/nsthread"
)

// binary is the uswitch binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 || os.Getenv(testenv.SkipEnv) != "" {
		// Each test skips (opted out) or fails (no root) with the
		// reason; nothing to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "uswitch-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "uswitch")
	out, err := exec.Command("go", "build", "-race", "-o", binary, "../cmd/uswitch").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building uswitch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needRoot makes sure an end-to-end test can run: root, /dev/net/tun and
// ip(8). It skips only when USWITCH_SKIP_E2E opts out (`make test-unit`);
// anything missing fails the test, naming it.
func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "/dev/net/tun", "ip")
}

// prefix returns a name prefix unique to this test process and tag, so
// parallel runs and leftovers never collide with anything else.
func prefix(tag string) string {
	return fmt.Sprintf("u%d%s", os.Getpid()%10000, tag)
}

// instance is a running `uswitch run`.
type instance struct {
	t       *testing.T
	name    string
	config  string
	cmd     *exec.Cmd
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // what Wait returned, set before done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeConfig writes a net.toml for instance name into the test's temp dir.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "net.toml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// start runs `uswitch run --config cfg [flags]` (with cfg "", the embedded
// default topology) and waits for `ready`. The instance is stopped
// (SIGTERM) and `uswitch down` run at the end of the test.
func start(t *testing.T, name, cfg string, flags ...string) *instance {
	t.Helper()
	in := &instance{t: t, name: name, config: cfg, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(binary, append(append([]string{"run"}, in.configArgs()...), flags...)...)
	// If the test binary dies (a timeout), uswitch gets SIGTERM and cleans up.
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	in.cmd.Stdout = in.stdout
	pr, pw := io.Pipe()
	in.cmd.Stderr = io.MultiWriter(in.stderr, pw)
	require.NoError(t, in.cmd.Start())
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=ready") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { in.waitErr = in.cmd.Wait(); close(in.done); pw.Close() }()
	t.Cleanup(func() {
		in.stop()
		if out, err := exec.Command(binary, append([]string{"down"}, in.configArgs()...)...).CombinedOutput(); err != nil {
			t.Errorf("uswitch down: %v\n%s", err, out)
		}
		if t.Failed() {
			t.Logf("uswitch stdout:\n%s\nstderr:\n%s", in.stdout, in.stderr)
		}
	})
	select {
	case <-ready:
	case <-in.done:
		t.Fatalf("uswitch run exited before ready: %v\nstderr:\n%s", in.waitErr, in.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("uswitch run not ready after 60s\nstderr:\n%s", in.stderr)
	}
	return in
}

// stop sends SIGTERM and waits for the process to exit; it returns the
// exit error. Calling it again is harmless.
func (in *instance) stop() error {
	select {
	case <-in.done:
		return in.waitErr
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
		return in.waitErr
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
		return fmt.Errorf("uswitch did not stop within 30s after SIGTERM")
	}
}

// running reports whether the process has not exited yet.
func (in *instance) running() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL, as a crash would, and waits for the exit.
func (in *instance) kill() {
	_ = in.cmd.Process.Kill()
	<-in.done
}

// configArgs selects the instance's config on a uswitch command line.
func (in *instance) configArgs() []string {
	if in.config == "" {
		return nil
	}
	return []string{"--config", in.config}
}

// cli runs a uswitch subcommand against this instance and returns stdout.
func (in *instance) cli(args ...string) (string, error) {
	if in.config == "" {
		args = append(args, "--control", "/run/uswitch/"+in.name+".sock")
	} else {
		args = append(args, in.configArgs()...)
	}
	var out, errb strings.Builder
	c := exec.Command(binary, args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if err != nil {
		err = fmt.Errorf("uswitch %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

// ports returns every port's counters from `uswitch ports -o json`.
func (in *instance) ports(t *testing.T) []datapath.PortInfo {
	t.Helper()
	out, err := in.cli("ports", "-o", "json")
	require.NoError(t, err)
	var ports []datapath.PortInfo
	require.NoError(t, json.Unmarshal([]byte(out), &ports), out)
	return ports
}

// port returns the counters of the port named name.
func (in *instance) port(t *testing.T, name string) datapath.PortInfo {
	t.Helper()
	for _, p := range in.ports(t) {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no port %q", name)
	return datapath.PortInfo{}
}

// inNetns runs fn on an OS thread switched into the named namespace. Sockets
// fn creates stay in that namespace after it returns.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	ns, err := nsthread.Open(name)
	require.NoError(t, err)
	defer ns.Close()
	require.NoError(t, nsthread.In(ns, func() error { fn(); return nil }))
}

// family is the network of proto ("tcp" or "udp") for address addr:
// "tcp6" for "[ip6]:port", "tcp4" otherwise.
func family(proto, addr string) string {
	if strings.HasPrefix(addr, "[") {
		return proto + "6"
	}
	return proto + "4"
}

// listen opens a TCP listener inside a namespace, on IPv6 for "[ip6]:port".
func listen(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	inNetns(t, ns, func() { l, err = net.Listen(family("tcp", addr), addr) })
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// dial opens a TCP connection from inside a namespace.
func dial(t *testing.T, ns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(context.Background(), family("tcp", addr), addr)
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// nsExec runs a command inside a namespace with `ip netns exec`.
func nsExec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// netnsExists reports whether `ip netns` knows name.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/var/run/netns", name))
	return err == nil
}

// linksWithPrefix lists root-namespace links whose name starts with p.
func linksWithPrefix(t *testing.T, p string) []string {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			n := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
			if strings.HasPrefix(n, p) {
				names = append(names, n)
			}
		}
	}
	return names
}
