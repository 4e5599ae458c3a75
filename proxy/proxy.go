// Package proxy owns the userland proxy (docker-proxy's role): for every
// published port of an instance it listens on the host's own port, on all
// addresses of the uplink's namespace (0.0.0.0:HOSTPORT, a dual-stack
// socket, so that 127.0.0.1:HOSTPORT and [::1]:HOSTPORT work there), and
// relays each TCP connection or UDP flow to the endpoint's address and
// container port: a client on IPv6 to the endpoint's IPv6 address when
// it has one, as docker-proxy does for [::]. Outgoing connections
// are made from inside that namespace too, so they reach the endpoint
// through the host side of the uplink and its routes. StartOn runs the same
// proxy over another network stack (package uswitchtest's host side).
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/uswitch-dev/uswitch/config"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// Protocols a Mapping can name.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

const (
	dialTimeout     = 5 * time.Second  // TCP connect to the target
	defaultUDPIdle  = 90 * time.Second // an idle UDP flow is closed after this
	defaultMaxFlows = 4096             // UDP flows per mapping
	maxDatagram     = 64 * 1024        // largest UDP payload relayed
)

// Mapping is one published port.
type Mapping struct {
	Proto    string         // "tcp" or "udp"
	HostPort uint16         // the port listened on, on every address of the namespace
	Target   netip.AddrPort // the endpoint's address and container port
	// Target6 is the endpoint's IPv6 address and container port, where
	// clients on IPv6 go; invalid when the endpoint has no IPv6 address
	// (they go to Target then).
	Target6  netip.AddrPort
	Endpoint string // the endpoint's name, for logs
}

// target is where a client from address client goes: Target6 for an IPv6
// client (not an IPv4-mapped one) when there is one, else Target.
func (m Mapping) target(client netip.Addr) netip.AddrPort {
	if client.Is6() && !client.Is4In6() && m.Target6.IsValid() {
		return m.Target6
	}
	return m.Target
}

// name is the mapping as users wrote it: "8080/tcp".
func (m Mapping) name() string { return fmt.Sprintf("%d/%s", m.HostPort, m.Proto) }

// attrs are the slog attributes that identify the mapping.
func (m Mapping) attrs() []any {
	a := []any{"publish", m.name(), "endpoint", m.Endpoint, "target", m.Target.String()}
	if m.Target6.IsValid() {
		a = append(a, "target6", m.Target6.String())
	}
	return a
}

// Mappings lists the published ports of a plan (bridge endpoints with
// publishes), in plan order. The target is the endpoint's first interface's
// address. It does not look at Uplink.UserlandProxy: whether to start a
// proxy at all is the caller's decision.
func Mappings(p *config.Plan) []Mapping {
	if p == nil {
		return nil
	}
	var out []Mapping
	for _, ep := range p.Endpoints {
		if ep.Mode != config.ModeBridge || len(ep.Interfaces) == 0 {
			continue
		}
		ifc := ep.Interfaces[0]
		for _, pub := range ep.Publish {
			m := Mapping{
				Proto:    pub.Proto,
				HostPort: pub.HostPort,
				Target:   netip.AddrPortFrom(ifc.IP, pub.ContainerPort),
				Endpoint: ep.Name,
			}
			if ifc.IP6.IsValid() {
				m.Target6 = netip.AddrPortFrom(ifc.IP6, pub.ContainerPort)
			}
			out = append(out, m)
		}
	}
	return out
}

// options are the tunables tests change.
type options struct {
	udpIdle  time.Duration // idle UDP flows are closed after this
	maxFlows int           // UDP flows per mapping; beyond it new clients are dropped
}

func defaultOptions() options {
	return options{udpIdle: defaultUDPIdle, maxFlows: defaultMaxFlows}
}

// Net is a network stack the proxy listens and dials on: the kernel's
// inside a namespace for Start, any other (a userspace stack) for StartOn.
// Listen and ListenPacket get "0.0.0.0:HOSTPORT"; DialContext gets the
// target, on "tcp" or "udp". The TCP connections it returns must have
// CloseWrite (as *net.TCPConn has), for half-close.
type Net interface {
	Listen(network, addr string) (net.Listener, error)
	ListenPacket(network, addr string) (net.PacketConn, error)
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy is a running userland proxy; Close stops it.
type Proxy struct {
	log    *slog.Logger
	ns     netns.NsHandle // the namespace of nsNet; None = the current one
	net    Net            // where it listens and dials
	opts   options
	ctx    context.Context // cancelled by Close: aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine started by goTrack
	udp    []*udpRelay    // for counters

	mu     sync.Mutex
	closed bool
	open   map[io.Closer]struct{} // listeners and connections Close must close

	closeOnce sync.Once
}

// Start listens for every mapping inside namespace netnsName ("" = the
// calling process's current namespace; otherwise an `ip netns` name,
// /var/run/netns/NAME) and relays until Close. ctx bounds only the setup.
// If any listener cannot be opened (typically: the port is in use), what
// was opened is closed and the error names the mapping, e.g.
// `publish 8080/tcp: listen 0.0.0.0:8080 in netns "x": address already in use`.
// log may be nil.
func Start(ctx context.Context, netnsName string, maps []Mapping, log *slog.Logger) (*Proxy, error) {
	return start(ctx, netnsName, maps, log, defaultOptions())
}

// StartOn is Start over the network stack n instead of a namespace's
// sockets: it listens on n's 0.0.0.0:HOSTPORT for every mapping and dials
// the targets on n.
func StartOn(ctx context.Context, n Net, maps []Mapping, log *slog.Logger) (*Proxy, error) {
	return run(ctx, n, netns.None(), "the given stack", maps, log, defaultOptions())
}

func start(ctx context.Context, netnsName string, maps []Mapping, log *slog.Logger, opts options) (*Proxy, error) {
	ns := netns.None()
	where := "the current netns"
	if netnsName != "" {
		where = fmt.Sprintf("netns %q", netnsName)
		h, err := nsthread.Open(netnsName)
		if err != nil {
			return nil, err
		}
		ns = h
	}
	return run(ctx, nil, ns, where, maps, log, opts)
}

// run starts the proxy on n, or on the kernel's sockets in ns if n is nil
// (ns is then the proxy's to close).
func run(ctx context.Context, n Net, ns netns.NsHandle, where string, maps []Mapping, log *slog.Logger, opts options) (*Proxy, error) {
	fail := func(err error) (*Proxy, error) {
		if ns.IsOpen() {
			ns.Close()
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	for _, m := range maps {
		if err := validate(m); err != nil {
			return fail(err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Proxy{
		log:    log,
		ns:     ns,
		net:    n,
		opts:   opts,
		ctx:    pctx,
		cancel: cancel,
		open:   make(map[io.Closer]struct{}),
	}
	if n == nil {
		p.net = nsNet{p}
	}
	for _, m := range maps {
		if err := p.listen(m, where); err != nil {
			p.Close()
			return nil, err
		}
	}
	log.Info("userland proxy started", "ports", len(maps), "on", where)
	return p, nil
}

// validate checks what Start relies on; a Plan's mappings always pass.
func validate(m Mapping) error {
	switch {
	case m.Proto != ProtoTCP && m.Proto != ProtoUDP:
		return fmt.Errorf("publish %s: unsupported protocol %q", m.name(), m.Proto)
	case m.HostPort == 0:
		return fmt.Errorf("publish %s: host port 0", m.name())
	case !m.Target.IsValid() || m.Target.Port() == 0:
		return fmt.Errorf("publish %s: invalid target %q", m.name(), m.Target)
	case m.Target6.IsValid() && (m.Target6.Port() == 0 || !m.Target6.Addr().Is6()):
		return fmt.Errorf("publish %s: invalid IPv6 target %q", m.name(), m.Target6)
	}
	return nil
}

// listen opens m's listening socket inside the namespace and starts serving it.
func (p *Proxy) listen(m Mapping, where string) error {
	addr := netip.AddrPortFrom(netip.IPv4Unspecified(), m.HostPort).String()
	var ln io.Closer
	var serve func()
	var err error
	if m.Proto == ProtoTCP {
		var l net.Listener
		if l, err = p.net.Listen("tcp", addr); err == nil {
			ln, serve = l, func() { p.acceptTCP(m, l) }
		}
	} else {
		var l net.PacketConn
		if l, err = p.net.ListenPacket("udp", addr); err == nil {
			r := &udpRelay{p: p, m: m, ln: l, flows: make(map[netip.AddrPort]*udpFlow)}
			p.udp = append(p.udp, r)
			ln, serve = l, r.serve
		}
	}
	if err != nil {
		return fmt.Errorf("publish %s: listen %s in %s: %w", m.name(), addr, where, rootCause(err))
	}
	if !p.goTrack(ln, serve) {
		ln.Close()
		return errors.New("proxy closed")
	}
	p.log.Debug("userland proxy listening", m.attrs()...)
	return nil
}

// rootCause strips the "listen tcp ...: bind:" layers that the message
// already says, keeping the errno ("address already in use") for errors.Is.
func rootCause(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// goTrack registers c to be closed by Close and runs fn in a goroutine that
// Close waits for. It returns false, starting nothing, if the proxy is
// already closed; the caller then closes c itself.
func (p *Proxy) goTrack(c io.Closer, fn func()) bool {
	if !p.track(c) {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// track registers c to be closed by Close; false if already closed.
func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

// forget closes c and unregisters it.
func (p *Proxy) forget(c io.Closer) {
	c.Close()
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
}

// Close stops the listeners and every relay, and waits for all of the
// proxy's goroutines to end. It always returns nil; calling it again does
// nothing.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		open := p.open
		p.open = nil
		p.mu.Unlock()
		p.cancel()
		for c := range open {
			c.Close()
		}
		p.wg.Wait()
		if p.ns.IsOpen() {
			p.ns.Close()
		}
		p.log.Info("userland proxy stopped")
	})
	return nil
}

// flows is the number of open UDP flows, over all mappings.
func (p *Proxy) flows() int {
	n := 0
	for _, r := range p.udp {
		r.mu.Lock()
		n += len(r.flows)
		r.mu.Unlock()
	}
	return n
}

// droppedFlows counts the UDP datagrams dropped because the flow table was full.
func (p *Proxy) droppedFlows() uint64 {
	var n uint64
	for _, r := range p.udp {
		n += r.dropped.Load()
	}
	return n
}
