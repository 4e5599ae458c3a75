package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMakeInstall runs `make install DESTDIR=...` from the repository's
// Makefile: the binary lands in $PREFIX/bin and runs, the unit in
// $PREFIX/lib/systemd/system runs the instance's config as a notify
// service that is restarted on failure and never runs `down`, and the CNI
// plugin lands in /opt/cni/bin.
func TestMakeInstall(t *testing.T) {
	mk, err := exec.LookPath("make")
	require.NoError(t, err, "make is needed to test `make install`")
	dest := t.TempDir()
	cni := filepath.Join(t.TempDir(), "uswitch-cni") // built there, not in the repo's bin/
	cmd := exec.Command(mk, "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr/local", "CNI_BIN="+cni)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	bin := filepath.Join(dest, "usr/local/bin/uswitch")
	st, err := os.Stat(bin)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	out, err = exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.True(t, strings.HasPrefix(string(out), "uswitch "), "%s", out)

	unit, err := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/uswitch@.service"))
	require.NoError(t, err)
	lines := map[string]string{}
	for _, l := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			lines[k] = v
		}
	}
	require.Equal(t, "/usr/local/bin/uswitch run --config /etc/uswitch/%i.toml", lines["ExecStart"])
	require.Equal(t, "notify", lines["Type"])
	require.Equal(t, "main", lines["NotifyAccess"])
	require.Equal(t, "on-failure", lines["Restart"])
	require.Equal(t, "/bin/kill -HUP $MAINPID", lines["ExecReload"], "systemctl reload applies the file again (SIGHUP)")
	for k, v := range lines {
		require.NotContains(t, v, " down", "%s runs uswitch down", k)
	}
	require.NotContains(t, string(unit), "@BINDIR@")

	plugin := filepath.Join(dest, "opt/cni/bin/uswitch-cni")
	st, err = os.Stat(plugin)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	c := exec.Command(plugin)
	c.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	c.Stdin = strings.NewReader("{}")
	out, err = c.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `"supportedVersions"`)
}

// TestMakeFuzzListsEveryTarget checks that `make fuzz` (which CI runs)
// runs every fuzz target of the repository and names none that is gone:
// FUZZ_TARGETS in the Makefile against the Fuzz functions of every
// package's tests.
func TestMakeFuzzListsEveryTarget(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(mk), "\\\n", " ")
	listed := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "FUZZ_TARGETS :="); ok {
			for _, t := range strings.Fields(rest) {
				listed[t] = true
			}
		}
	}
	require.NotEmpty(t, listed, "no FUZZ_TARGETS := line in the Makefile")
	found := map[string]bool{}
	err = filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg, err := filepath.Rel("../..", filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(src), "\n") {
			if name, ok := strings.CutPrefix(line, "func Fuzz"); ok {
				name, _, _ = strings.Cut(name, "(")
				found[filepath.ToSlash(pkg)+":Fuzz"+name] = true
			}
		}
		return nil
	})
	require.NoError(t, err)
	for target := range found {
		require.True(t, listed[target], "fuzz target %s is not in the Makefile's FUZZ_TARGETS: `make fuzz` (CI) does not run it", target)
	}
	for target := range listed {
		require.True(t, found[target], "FUZZ_TARGETS names %s, which no test file defines", target)
	}
}
