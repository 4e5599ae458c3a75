package proxy

import (
	"context"
	"net"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// inNetns runs fn inside the proxy's namespace, so the sockets it makes
// belong there; with no namespace named, in the current one.
func (p *Proxy) inNetns(fn func() error) error { return nsthread.In(p.ns, fn) }

// nsNet is the Net of Start: the kernel's sockets, made inside the proxy's
// namespace.
type nsNet struct{ p *Proxy }

// Listen implements Net.
func (n nsNet) Listen(network, addr string) (l net.Listener, err error) {
	err = n.p.inNetns(func() error {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket implements Net.
func (n nsNet) ListenPacket(network, addr string) (c net.PacketConn, err error) {
	err = n.p.inNetns(func() error {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// DialContext implements Net.
func (n nsNet) DialContext(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = n.p.inNetns(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
