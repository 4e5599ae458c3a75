// Package testenv owns the one rule for tests that need root: they run
// whenever the machine allows it. Only an explicit opt-out (USWITCH_SKIP_E2E,
// set by `make test-unit`) skips them; without root, or with a prerequisite
// missing, they fail and name what is missing, never pass silently.
package testenv

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// SkipEnv is the variable that opts out of the tests needing root.
const SkipEnv = "USWITCH_SKIP_E2E"

// NeedRoot skips t when SkipEnv is set, fails it without root, and fails it
// when one of needs is missing: a needs entry starting with "/" is a path
// that must exist (e.g. /dev/net/tun), any other a command that must be on
// PATH (e.g. ip, from iproute2).
func NeedRoot(t testing.TB, needs ...string) {
	t.Helper()
	if os.Getenv(SkipEnv) != "" {
		t.Skip(SkipEnv + " is set: skipping a test that needs root")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (network namespaces, TAP devices): run `sudo make test`, or `make test-unit` (%s=1) for the tests without root", SkipEnv)
	}
	var missing []string
	for _, n := range needs {
		if strings.HasPrefix(n, "/") {
			if _, err := os.Stat(n); err != nil {
				missing = append(missing, n+" ("+err.Error()+")")
			}
		} else if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n+" ("+err.Error()+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing on this machine: %s", strings.Join(missing, ", "))
	}
}

// Nobody is the uid and gid Unprivileged runs a test as.
const Nobody = 65534

// Unprivileged lets a check that must run without privileges run under
// root too. Called without root it returns true: the caller goes on with
// the check. Called as root it reruns the test alone in a child process of
// the test binary as uid and gid Nobody, fails t unless the test ran and
// passed there, and returns false: the caller returns.
func Unprivileged(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	// The go tool's build directory is private to root: run a copy of the
	// test binary from a directory nobody may enter.
	// (t.TempDir's parent is private too.)
	dir, err := os.MkdirTemp("", "uswitch-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("test binary: %v", err)
	}
	bin := filepath.Join(dir, filepath.Base(self))
	if err := copyFile(bin, self); err != nil {
		t.Fatalf("copy the test binary for a child as uid %d: %v", Nobody, err)
	}
	cmd := exec.Command(bin, "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s as uid %d: %v\n%s", t.Name(), Nobody, err, out)
	}
	t.Logf("ran as uid %d:\n%s", Nobody, out)
	return false
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
