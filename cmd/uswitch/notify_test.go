package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// notifySocket opens a datagram socket at addr (a path, or "@name") as a
// service manager would, and returns a function that reads one message.
func notifySocket(t *testing.T, addr string) func() string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := c.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}
}

func TestNotifierPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	recv := notifySocket(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	n, err := newNotifier()
	require.NoError(t, err)
	require.NotNil(t, n)
	_, set := os.LookupEnv("NOTIFY_SOCKET")
	require.False(t, set, "NOTIFY_SOCKET is passed on to the processes run starts")
	require.NoError(t, n.notify("READY=1", "STATUS=ready: 3 endpoints"))
	require.Equal(t, "READY=1\nSTATUS=ready: 3 endpoints\n", recv())
	require.NoError(t, n.notify("STOPPING=1"))
	require.Equal(t, "STOPPING=1\n", recv())
}

func TestNotifierAbstract(t *testing.T) {
	addr := fmt.Sprintf("@uswitch-notify-test-%d", os.Getpid())
	recv := notifySocket(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	n, err := newNotifier()
	require.NoError(t, err)
	require.NoError(t, n.notify("READY=1"))
	require.Equal(t, "READY=1\n", recv())
}

func TestNotifierUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := newNotifier()
	require.NoError(t, err)
	require.Nil(t, n)
	require.NoError(t, n.notify("READY=1"), "a nil notifier sends nothing")
}

func TestNotifierErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	_, err := newNotifier()
	require.EqualError(t, err, `NOTIFY_SOCKET="relative/path": want a socket path or an abstract socket @NAME`)

	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	n, err := newNotifier()
	require.NoError(t, err)
	require.ErrorContains(t, n.notify("READY=1"), "sd_notify ")
}
