package uswitchtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/proxy"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// Network is one running instance of a net.toml, built by New and torn
// down by the test's Cleanup.
type Network struct {
	t     testing.TB // nil after Start
	plan  *config.Plan
	dp    *datapath.Datapath
	clock *Clock
	ports map[string]*Port // endpoint interfaces, by switch port name
	host  *Port            // the uplink's host side; nil without [uplink]
	proxy *proxy.Proxy     // the userland proxy on host's stack; set with it

	mu       sync.Mutex // stacks, proxy, captures, closed
	stacks   []*Stack
	captures []*Capture
	closed   bool
	tmp      string // where captures go without a test
}

// New builds the datapath of netTOML (a net.toml, as `uswitch run` reads it)
// with an in-memory port for every endpoint interface and for the uplink's
// host side, and tears it all down in t.Cleanup. A configuration that does
// not parse fails t with config's message; so do the methods of the
// Network given something that does not exist.
func New(t testing.TB, netTOML string) *Network {
	t.Helper()
	n, err := start(t, netTOML)
	if err != nil {
		t.Fatalf("uswitchtest: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// Start is New outside a test (an Example, a main package): what New would
// fail the test with is its error, what the methods would fail the test
// with panics, and the caller must call Close.
func Start(netTOML string) (*Network, error) { return start(nil, netTOML) }

func start(t testing.TB, netTOML string) (*Network, error) {
	plan, err := config.Parse([]byte(netTOML), "net.toml")
	if err != nil {
		return nil, err
	}
	n := &Network{t: t, plan: plan, ports: map[string]*Port{}}
	n.clock = &Clock{n: n}
	dp, err := datapath.NewWithOptions(plan, &n.clock.fake, slog.New(slog.DiscardHandler), datapath.Options{DNSDialer: hostDialer{n}})
	if err != nil {
		return nil, err
	}
	n.dp = dp
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			p := newPort(n, ifc.Port, ifc.MAC, ifc.Prefix, ifc.MTU)
			p.gateway = ifc.Gateway
			if nw := plan.Network(ifc.Network); nw != nil && nw.DNS {
				p.resolver = ifc.Gateway
			}
			if err := dp.AttachEndpoint(ifc.Port, p.mem); err != nil {
				n.Close()
				return nil, err
			}
			n.ports[ifc.Port] = p
		}
	}
	if u := plan.Uplink; u != nil {
		// The host's MAC: what the kernel would pick for the TAP, made
		// deterministic from the host address as config does for the rest.
		a := u.HostAddress.Addr().As4()
		p := newPort(n, "host", packet.MAC{0x02, 0x42, a[0], a[1], a[2], a[3]}, u.HostAddress, 1500)
		for _, nw := range plan.Networks {
			if u.Routes && !nw.Internal {
				p.routes = append(p.routes, route{dst: nw.Subnet, via: u.Address.Addr()})
			}
		}
		if err := dp.AttachUplink(p.mem); err != nil {
			n.Close()
			return nil, err
		}
		n.host = p
	}
	return n, nil
}

// fail reports a misuse: it fails the test of New, or panics after Start.
func (n *Network) fail(format string, args ...any) {
	if n.t != nil {
		n.t.Helper()
		n.t.Fatalf("uswitchtest: "+format, args...)
	}
	panic(fmt.Sprintf("uswitchtest: "+format, args...))
}

// Close stops the userland proxy, the captures, the stacks and the datapath and waits for all
// of their goroutines. New's Cleanup calls it; calling it again is
// harmless.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	stacks, captures, px := n.stacks, n.captures, n.proxy
	n.mu.Unlock()
	if px != nil {
		px.Close()
	}
	for i := len(captures) - 1; i >= 0; i-- {
		if err := captures[i].Stop(); err != nil {
			n.report(err)
		}
	}
	for _, p := range n.ports {
		p.deliver.Store(nil)
	}
	if n.host != nil {
		n.host.deliver.Store(nil)
	}
	for _, s := range stacks {
		s.close()
	}
	if err := n.dp.Close(); err != nil {
		n.report(fmt.Errorf("closing the datapath: %w", err))
	}
	if n.tmp != "" {
		os.RemoveAll(n.tmp)
	}
}

// report is an error met while closing: the test's error, or a panic.
func (n *Network) report(err error) {
	if n.t != nil {
		n.t.Errorf("uswitchtest: %v", err)
		return
	}
	panic("uswitchtest: " + err.Error())
}

// Plan returns the resolved configuration: addresses, MACs and published
// host ports as `uswitch check` prints them.
func (n *Network) Plan() *config.Plan { return n.plan }

// Endpoint returns the in-memory port of the endpoint interface whose
// switch port is named port: an endpoint's name for its first interface,
// "<endpoint>/eth<i>" for the others. An unknown name fails the test.
func (n *Network) Endpoint(port string) *Port {
	p := n.ports[port]
	if p == nil {
		n.fail("no endpoint interface is named %q", port)
	}
	return p
}

// Host returns the uplink's host side: the port that `uswitch run` makes a
// TAP in the host's namespace, with the uplink's host_address. A net.toml
// without [uplink] fails the test.
func (n *Network) Host() *Port {
	if n.host == nil {
		n.fail("the configuration has no [uplink]")
	}
	return n.host
}

// Clock returns the fake clock of the instance's timers.
func (n *Network) Clock() *Clock { return n.clock }

// Ports returns every port with its counters, as `uswitch ports` shows.
func (n *Network) Ports() []datapath.PortInfo { return n.dp.Ports() }

// FDB returns the forwarding database of the named network, as `uswitch
// fdb` shows it. An unknown network fails the test.
func (n *Network) FDB(network string) []vswitch.Entry {
	sw := n.dp.Network(network)
	if sw == nil {
		n.fail("no network %q", network)
	}
	return sw.Entries()
}

// Conntrack returns the tracked connections, as `uswitch conntrack` shows
// them.
func (n *Network) Conntrack() []nat.Entry { return n.dp.Tracker().Table.Entries() }

// Datapath returns the running datapath, for what this package does not
// wrap. Package datapath is internal to uswitch and may change.
func (n *Network) Datapath() *datapath.Datapath { return n.dp }

// Clock is the fake clock of a Network: uswitch's own timers (FDB ageing,
// ARP, connection timeouts) see time move only through Advance.
type Clock struct {
	fake clock.Fake
	n    *Network
	mu   sync.Mutex // one Advance at a time
}

// Now returns the fake time in nanoseconds.
func (c *Clock) Now() int64 { return c.fake.Now() }

// Advance moves the fake time forward by d and runs the timers that
// `uswitch run` runs on its ticker: ARP retries and expiry, the expiry of
// connections and of FDB entries. When it returns, whatever expired by the
// new time is gone.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fake.Advance(d)
	dp := c.n.dp
	dp.Router().Tick()
	dp.Tracker().Table.Sweep(256) // every shard
	for _, sw := range dp.Networks() {
		sw.Expire()
	}
}

// hostDialer dials the [dns] upstream servers through the host side's
// stack, where the test serves them.
type hostDialer struct{ n *Network }

// DialContext implements dns.Dialer.
func (h hostDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.n.host == nil {
		return nil, errors.New("uswitchtest: no [uplink] to reach the DNS upstream through")
	}
	s, err := h.n.host.stack()
	if err != nil {
		return nil, err
	}
	return s.DialContext(ctx, network, addr)
}

// route is one route of a stack: dst through the gateway via.
type route struct {
	dst netip.Prefix
	via netip.Addr
}
