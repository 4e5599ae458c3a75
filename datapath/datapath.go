// Package datapath owns a running instance's forwarding plane: one learning
// switch per network of a Plan, the router with a gateway port on each
// switch and the uplink, the readers that carry each frame through switch
// and router to its egress device (run to completion): one goroutine per
// attached device, or one busy-poll thread for every polled device
// (poll.go), and the timers (FDB ageing, ARP). The same wiring runs with
// real TAP/veth ports in production and in-memory ports in tests.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/capture"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/dns"
	"github.com/uswitch-dev/uswitch/host"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/router"
	"github.com/uswitch-dev/uswitch/stats"
	vswitch "github.com/uswitch-dev/uswitch/switch"
	"github.com/uswitch-dev/uswitch/tap"
)

// UplinkPort is the name of the router's port to the host.
const UplinkPort = "uplink"

// Datapath is the forwarding plane of one instance.
type Datapath struct {
	plan     *config.Plan
	clock    clock.Clock
	networks []*vswitch.Switch
	byName   map[string]*vswitch.Switch
	router   *router.Router
	host     *host.Stage
	tracker  *nat.Tracker
	uplink   *uplink
	capture  *capture.Hub
	dns      *dns.Server // nil when no network has dns = true
	poller   *poller     // nil without Options.BusyPoll
	log      *slog.Logger

	mu      sync.Mutex
	readers []reader
	wg      sync.WaitGroup
	stop    chan struct{}
	closed  bool
}

// reader is one device the datapath reads from.
type reader struct {
	name string
	dev  tap.Port
}

// uplink is the router's port to the host: a device with no switch in
// between, so the datapath counts its frames itself. The router port exists
// from New on; the device arrives with AttachUplink.
type uplink struct {
	port    *router.Port
	dev     atomic.Pointer[tap.Port]
	stats   stats.Port
	capture *capture.Hub
}

// Send implements router.Link for the uplink.
func (u *uplink) Send(frame []byte, off packet.Offload) {
	dev := u.dev.Load()
	if dev == nil {
		u.stats.Drop(stats.TxError)
		return
	}
	if u.capture.Active() {
		u.capture.Frame("", UplinkPort, frame, off)
	}
	if err := (*dev).WriteFrame(frame, off); err != nil {
		u.stats.Drop(stats.TxError)
		return
	}
	u.stats.Tx(len(frame))
}

// switchLink is a router port's way onto its network: frames enter the
// switch as if received on the gateway's switch port.
type switchLink struct {
	sw   *vswitch.Switch
	port *vswitch.Port
}

func (l switchLink) Send(frame []byte, off packet.Offload) { l.sw.Input(l.port, frame, off) }

// Options are the optional settings of NewWithOptions.
type Options struct {
	// DNSDialer dials the [dns] upstream servers of the embedded DNS. nil:
	// from the uplink's namespace (dns.NetnsDialer(plan.Uplink.Netns)), or
	// from uswitch's own without an uplink.
	DNSDialer dns.Dialer
	// BusyPoll serves the ports that are tap.Polled from one busy-polling
	// thread (see poll.go) instead of a reader goroutine each. The thread
	// keeps one of the process's Ps while it spins.
	BusyPoll bool
	// CPULatency lets the busy-poll thread hold a CPU latency request of 0
	// (/dev/cpu_dma_latency) while it spins, so that idle CPUs poll instead
	// of sleeping (see poll.go). It changes the power state of the whole
	// machine, so it is off unless asked for.
	CPULatency bool
}

// New builds one switch per network of plan, and the router with a gateway
// port on each. Nothing runs until devices are attached and Start is called.
func New(plan *config.Plan, clk clock.Clock, log *slog.Logger) (*Datapath, error) {
	return NewWithOptions(plan, clk, log, Options{})
}

// NewWithOptions is New with optional settings.
func NewWithOptions(plan *config.Plan, clk clock.Clock, log *slog.Logger, opt Options) (*Datapath, error) {
	d := &Datapath{plan: plan, clock: clk, byName: map[string]*vswitch.Switch{}, log: log, stop: make(chan struct{})}
	d.capture = capture.NewHub()
	rules, err := nat.Compile(plan, log)
	if err != nil {
		return nil, err
	}
	d.tracker = nat.NewTracker(rules, plan.Defaults.ConntrackMax, clk)
	d.router = router.New(clk, log, d.tracker)
	d.host = host.New(d.router, clk)
	d.router.SetHost(d.host)
	for _, n := range plan.Networks {
		sw := vswitch.New(vswitch.Config{
			Name:       n.Name,
			Ageing:     time.Duration(plan.Defaults.FDBAgeing),
			MaxEntries: plan.Defaults.FDBMax,
			Clock:      clk,
		})
		sw.SetObserver(d.capture)
		d.networks = append(d.networks, sw)
		d.byName[n.Name] = sw
		if err := d.addGateway(sw, n); err != nil {
			return nil, err
		}
	}
	if u := plan.Uplink; u != nil {
		d.uplink = &uplink{capture: d.capture}
		rp, err := d.router.AddPort(router.PortConfig{Name: UplinkPort, MAC: u.MAC, Addr: u.Address, MTU: 1500}, d.uplink, &d.uplink.stats)
		if err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
		d.uplink.port = rp
		d.router.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), rp, u.HostAddress.Addr())
	}
	d.startDNS(opt.DNSDialer)
	if opt.BusyPoll {
		if d.poller, err = newPoller(d, opt.CPULatency); err != nil {
			if d.dns != nil {
				d.dns.Close()
			}
			return nil, err
		}
	}
	return d, nil
}

// startDNS builds the embedded DNS when a network has dns = true and
// registers it with the host stage.
func (d *Datapath) startDNS(dialer dns.Dialer) {
	if !slices.ContainsFunc(d.plan.Networks, func(n config.Network) bool { return n.DNS }) {
		return
	}
	if dialer == nil {
		ns := ""
		if d.plan.Uplink != nil {
			ns = d.plan.Uplink.Netns
		}
		dialer = dns.NetnsDialer(ns)
	}
	d.dns = dns.New(d.plan, dialer, d.log)
	d.dns.Register(d.host)
}

// addGateway attaches the router's port for network n to its switch, with
// a static FDB entry so frames to the gateway MAC reach the router alone.
func (d *Datapath) addGateway(sw *vswitch.Switch, n config.Network) error {
	var rp *router.Port
	name := "gw/" + n.Name
	swp, err := sw.AddPort(vswitch.PortConfig{Name: name, MAC: n.GatewayMAC, Shared: true},
		vswitch.DeviceFunc(func(f []byte, off packet.Offload) error { rp.Input(f, off); return nil }))
	if err != nil {
		return err
	}
	rp, err = d.router.AddPort(router.PortConfig{
		Name:    name,
		Network: n.Name,
		MAC:     n.GatewayMAC,
		Addr:    netip.PrefixFrom(n.Gateway, n.Subnet.Bits()),
		MTU:     n.MTU,
	}, switchLink{sw: sw, port: swp}, &swp.Stats)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return sw.AddStatic(0, n.GatewayMAC, swp)
}

// Tracker returns the connection tracker and rule set.
func (d *Datapath) Tracker() *nat.Tracker { return d.tracker }

// DNS returns the embedded DNS, or nil when no network has it.
func (d *Datapath) DNS() *dns.Server { return d.dns }

// Capture returns the hub that fans the frames of every switch port and of
// the uplink out to packet captures.
func (d *Datapath) Capture() *capture.Hub { return d.capture }

// Router returns the instance's router.
func (d *Datapath) Router() *router.Router { return d.router }

// Network returns the switch of the named network, or nil.
func (d *Datapath) Network(name string) *vswitch.Switch { return d.byName[name] }

// Networks returns the switches in plan order.
func (d *Datapath) Networks() []*vswitch.Switch { return d.networks }

// AttachEndpoint attaches dev as the switch port of the plan interface named
// port (e.g. "web" or "api/eth1"), with the endpoint's port security, and
// starts reading from it.
func (d *Datapath) AttachEndpoint(port string, dev tap.Port) error {
	for _, ep := range d.plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			if ifc.Port == port {
				pc := vswitch.PortConfig{Name: port, Secure: ep.PortSecurity, MAC: ifc.MAC}
				if ifc.IP.Is4() {
					pc.IP = ifc.IP.As4()
				}
				return d.Attach(ifc.Network, pc, dev)
			}
		}
	}
	return fmt.Errorf("no endpoint interface is named %q", port)
}

// Attach adds dev to a network's switch and starts reading it.
func (d *Datapath) Attach(network string, pc vswitch.PortConfig, dev tap.Port) error {
	sw := d.byName[network]
	if sw == nil {
		return fmt.Errorf("port %q: no network %q", pc.Name, network)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("datapath closed")
	}
	p, err := sw.AddPort(pc, dev)
	if err != nil {
		return err
	}
	if err := d.startReader(pc.Name, dev, func(f []byte, off packet.Offload) { sw.Input(p, f, off) }, func() { sw.RemovePort(p) }); err != nil {
		sw.RemovePort(p)
		return err
	}
	return nil
}

// AttachUplink gives the router's uplink port its device (the TAP whose
// other side is the host) and starts reading from it.
func (d *Datapath) AttachUplink(dev tap.Port) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return errors.New("datapath closed")
	case d.uplink == nil:
		return errors.New("the plan has no uplink")
	case d.uplink.dev.Load() != nil:
		return errors.New("uplink already attached")
	}
	up := d.uplink
	up.dev.Store(&dev)
	if err := d.startReader(UplinkPort, dev, func(f []byte, off packet.Offload) {
		up.stats.Rx(len(f))
		if up.capture.Active() {
			up.capture.Frame("", UplinkPort, f, off)
		}
		up.port.Input(f, off)
	}, func() { up.dev.Store(nil) }); err != nil {
		up.dev.Store(nil)
		return err
	}
	return nil
}

// startReader reads a device: a reader goroutine with one buffer, reused
// for every frame, carried through the datapath before the next read; or,
// with busy polling and a polled device, the busy-poll thread. Called with
// d.mu held.
func (d *Datapath) startReader(name string, dev tap.Port, input func([]byte, packet.Offload), lost func()) error {
	if pd, ok := dev.(tap.Polled); ok && d.poller != nil {
		if err := d.poller.add(name, pd, input, lost); err != nil {
			return err
		}
	} else {
		d.goRead(name, dev, input, lost)
	}
	d.readers = append(d.readers, reader{name: name, dev: dev})
	return nil
}

// goRead starts dev's reader goroutine.
func (d *Datapath) goRead(name string, dev tap.Port, input func([]byte, packet.Offload), lost func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		buf := make([]byte, tap.MaxFrame)
		for {
			n, off, err := dev.ReadFrame(buf)
			if err != nil {
				select {
				case <-d.stop:
				default:
					// A device that goes away (its namespace deleted from
					// outside) is an event to report, not a datapath error.
					d.log.Warn("port lost, detaching it", "port", name, "err", err)
					lost()
				}
				return
			}
			d.carry(name, input, buf[:n], off)
		}
	}()
}

// carry runs one frame through the datapath. A bug that panics on some
// frame costs that frame, logged with its port, not the whole switch.
func (d *Datapath) carry(port string, input func([]byte, packet.Offload), frame []byte, off packet.Offload) {
	defer func() {
		if e := recover(); e != nil {
			d.log.Error("frame handling panicked; frame dropped", "port", port, "panic", e, "stack", string(debug.Stack()))
		}
	}()
	input(frame, off)
}

// sweepShards is how many of the connection table's 256 shards each tick
// sweeps for expired connections.
const sweepShards = 16

// Start runs the timers until Close: ARP and a slice of the connection
// table's expiry sweep every tick, FDB ageing every second.
func (d *Datapath) Start(tick time.Duration) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-t.C:
				d.router.Tick()
				d.tracker.Table.Sweep(sweepShards)
				if time.Since(last) >= time.Second {
					last = time.Now()
					for _, sw := range d.networks {
						sw.Expire()
					}
				}
			case <-d.stop:
				return
			}
		}
	}()
}

// Close stops every reader by closing its device and waits for them.
func (d *Datapath) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.stop)
	if d.poller != nil {
		d.poller.close()
	}
	var errs []error
	for _, r := range d.readers {
		if err := r.dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", r.name, err))
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
	if d.dns != nil {
		// No reader runs any more, so no query arrives: stop the forwarded
		// ones still in flight.
		d.dns.Close()
	}
	return errors.Join(errs...)
}

// PortInfo is one port's identity and counters, as `uswitch ports` shows.
type PortInfo struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	stats.Snapshot
}

// Ports returns every port of every network in plan order, then the uplink.
func (d *Datapath) Ports() []PortInfo {
	var out []PortInfo
	for _, sw := range d.networks {
		for _, p := range sw.Ports() {
			out = append(out, PortInfo{Name: p.Name, Network: sw.Name(), Snapshot: p.Stats.Snapshot()})
		}
	}
	if d.uplink != nil {
		out = append(out, PortInfo{Name: UplinkPort, Snapshot: d.uplink.stats.Snapshot()})
	}
	return out
}
