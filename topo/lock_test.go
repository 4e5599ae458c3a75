package topo

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLockRemovesFile: unlock removes the lock file; a lock file left by a
// process that died (unlocked, still there) is taken over.
func TestLockRemovesFile(t *testing.T) {
	opt := Options{StateDir: t.TempDir()}
	path := filepath.Join(opt.StateDir, "lab.lock")
	unlock, err := Lock("lab", opt)
	require.NoError(t, err)
	require.FileExists(t, path)
	unlock()
	require.NoFileExists(t, path)

	require.NoError(t, os.WriteFile(path, []byte("12345\n"), 0o644)) // a dead process's
	unlock, err = Lock("lab", opt)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(b))
	unlock()
	require.NoFileExists(t, path)
}

// TestLockStillAt: a file removed from its path, or replaced there by
// another, is not the one at the path any more; Lock starts again then.
func TestLockStillAt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.lock")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	at, err := stillAt(f, path)
	require.NoError(t, err)
	require.True(t, at)

	require.NoError(t, os.Remove(path))
	at, err = stillAt(f, path)
	require.NoError(t, err)
	require.False(t, at, "removed")

	require.NoError(t, os.WriteFile(path, nil, 0o644))
	at, err = stillAt(f, path)
	require.NoError(t, err)
	require.False(t, at, "replaced by another file")
}
