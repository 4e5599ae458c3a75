package dns

import (
	"context"
	"net"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// NetnsDialer returns a Dialer whose sockets live in the named network
// namespace (an `ip netns` name), so that upstream servers are reached as
// from that namespace: the uplink's, whose 127.0.0.53 is the host's own
// resolver when it is the root namespace. An empty name dials from the
// namespace uswitch runs in.
func NetnsDialer(name string) Dialer {
	if name == "" {
		return &net.Dialer{}
	}
	return &netnsDialer{name: name}
}

type netnsDialer struct {
	name string
	d    net.Dialer
}

// DialContext creates the socket inside the namespace (a socket keeps the
// namespace it was created in).
func (n *netnsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ns, err := nsthread.Open(n.name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var c net.Conn
	err = nsthread.In(ns, func() (err error) {
		c, err = n.d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return c, err
}
