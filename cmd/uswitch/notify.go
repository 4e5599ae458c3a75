package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// notifier tells a service manager how `uswitch run` is doing, over the
// datagram socket that $NOTIFY_SOCKET names: the sd_notify(3) protocol
// that systemd's Type=notify services speak (one datagram of
// newline-separated VAR=value lines: READY=1, STOPPING=1, STATUS=...). A
// nil *notifier sends nothing.
type notifier struct {
	addr *net.UnixAddr
}

// newNotifier returns a notifier for $NOTIFY_SOCKET, a socket path or an
// abstract socket written "@name", or nil when it is not set. It unsets the
// variable, so that the processes run starts do not speak for it.
func newNotifier() (*notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want a socket path or an abstract socket @NAME", path)
	}
	// The net package turns a leading '@' into the abstract namespace's 0.
	return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
}

// notify sends the lines as one datagram.
func (n *notifier) notify(lines ...string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	return nil
}
