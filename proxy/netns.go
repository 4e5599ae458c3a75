package proxy

import "github.com/uswitch-dev/uswitch/nsthread"

// inNetns runs fn inside the proxy's namespace, so the sockets it makes
// belong there; with no namespace named, in the current one.
func (p *Proxy) inNetns(fn func() error) error { return nsthread.In(p.ns, fn) }
