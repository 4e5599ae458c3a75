package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, nil, 0o600))
}

func TestResolveSocketControl(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "a.sock"))
	touch(t, filepath.Join(dir, "b.sock"))
	got, err := resolveSocket(dir, "/somewhere/x.sock", "")
	require.NoError(t, err)
	require.Equal(t, "/somewhere/x.sock", got, "--control wins over the directory")

	_, err = resolveSocket(dir, "/somewhere/x.sock", "net.toml")
	require.EqualError(t, err, "--control and --config both name an instance: give one")
}

func TestResolveSocketConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "net.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`name = "lab"

[[network]]
name = "front"
subnet = "172.20.0.0/24"
`), 0o644))
	got, err := resolveSocket(dir, "", cfg)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "lab.sock"), got)

	_, err = resolveSocket(dir, "", filepath.Join(dir, "missing.toml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestResolveSocketOnlyOne(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "lab.sock"))
	touch(t, filepath.Join(dir, "lab.state")) // not a socket name
	got, err := resolveSocket(dir, "", "")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "lab.sock"), got)
}

func TestResolveSocketNone(t *testing.T) {
	dir := t.TempDir()
	_, err := resolveSocket(dir, "", "")
	require.EqualError(t, err, "no uswitch instance is running (no control socket in "+dir+")")

	missing := filepath.Join(dir, "nope")
	_, err = resolveSocket(missing, "", "")
	require.EqualError(t, err, "no uswitch instance is running (no control socket in "+missing+")")
}

func TestResolveSocketSeveral(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "lab.sock"))
	touch(t, filepath.Join(dir, "demo.sock"))
	_, err := resolveSocket(dir, "", "")
	require.EqualError(t, err, "2 uswitch instances are running (demo, lab): choose one with --config FILE or --control PATH")
}
