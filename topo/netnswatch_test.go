package topo

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestInotifyNames reads the names of real inotify events: two files
// deleted from a directory of the test's own.
func TestInotifyNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "a-much-longer-name-than-the-padding"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o600))
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_DELETE)
	require.NoError(t, err)
	for _, n := range []string{"a", "a-much-longer-name-than-the-padding"} {
		require.NoError(t, os.Remove(filepath.Join(dir, n)))
	}
	var names []string
	buf := make([]byte, 4096)
	for len(names) < 2 {
		n, err := unix.Read(fd, buf)
		require.NoError(t, err)
		names = append(names, inotifyNames(buf[:n])...)
	}
	require.Equal(t, []string{"a", "a-much-longer-name-than-the-padding"}, names)
	require.Empty(t, inotifyNames(buf[:unix.SizeofInotifyEvent-1]), "a short read is no event")
}
