package proxy

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// openNetns returns a handle to the `ip netns` namespace name
// (/var/run/netns/NAME); the caller closes it.
func openNetns(name string) (netns.NsHandle, error) {
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return netns.None(), fmt.Errorf("invalid netns name %q", name)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %q: %w", name, err)
	}
	return h, nil
}

// inNetns runs fn inside the proxy's namespace (see runIn).
func (p *Proxy) inNetns(fn func() error) error { return runIn(p.ns, fn) }

// runIn runs fn with its calling thread in namespace ns, so that the
// sockets fn creates belong to ns (a socket keeps its namespace for life).
// If ns is not open, fn simply runs on the calling goroutine, in the
// current namespace. Otherwise fn runs on a fresh goroutine locked to its
// thread; the thread is switched back afterwards and only then returned to
// the pool. If switching back fails the goroutine exits still locked, so
// the runtime ends the thread instead of reusing it in the wrong namespace.
func runIn(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err = netns.Set(ns); err != nil {
			err = fmt.Errorf("setns: %w", err)
		} else {
			err = fn()
		}
		if rerr := netns.Set(orig); rerr != nil {
			ch <- errors.Join(err, fmt.Errorf("return to the original netns: %w", rerr))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		ch <- err
	}()
	return <-ch
}
