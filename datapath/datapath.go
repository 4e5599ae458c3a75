// Package datapath owns a running instance's forwarding: one learning switch
// per network of a Plan, one reader goroutine per attached port that carries
// each frame through the switch to its egress ports (run to completion), and
// the periodic FDB ageing sweep. The same wiring runs with real TAP/veth
// ports in production and in-memory ports in tests.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"uswitch/clock"
	"uswitch/config"
	"uswitch/stats"
	"uswitch/tap"
	"uswitch/vswitch"
)

// Datapath is the forwarding plane of one instance.
type Datapath struct {
	plan     *config.Plan
	clock    clock.Clock
	networks []*vswitch.Switch
	byName   map[string]*vswitch.Switch
	log      *slog.Logger

	mu     sync.Mutex
	ports  []*attached
	wg     sync.WaitGroup
	stop   chan struct{}
	closed bool
}

type attached struct {
	sw   *vswitch.Switch
	port *vswitch.Port
	dev  tap.Port
}

// New builds one switch per network of plan. Nothing runs until Attach and
// Start.
func New(plan *config.Plan, clk clock.Clock, log *slog.Logger) *Datapath {
	d := &Datapath{plan: plan, clock: clk, byName: map[string]*vswitch.Switch{}, log: log, stop: make(chan struct{})}
	for _, n := range plan.Networks {
		sw := vswitch.New(vswitch.Config{
			Name:       n.Name,
			Ageing:     plan.Defaults.FDBAgeing,
			MaxEntries: plan.Defaults.FDBMax,
			Clock:      clk,
		})
		d.networks = append(d.networks, sw)
		d.byName[n.Name] = sw
	}
	return d
}

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
				return d.Attach(ifc.Network, vswitch.PortConfig{Name: port, Secure: ep.PortSecurity, MAC: ifc.MAC}, dev)
			}
		}
	}
	return fmt.Errorf("no endpoint interface is named %q", port)
}

// Attach adds dev to a network's switch and starts its reader goroutine.
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
	a := &attached{sw: sw, port: p, dev: dev}
	d.ports = append(d.ports, a)
	d.wg.Add(1)
	go d.read(a)
	return nil
}

// read is a port's reader: one buffer, reused for every frame, carried
// through the switch before the next read.
func (d *Datapath) read(a *attached) {
	defer d.wg.Done()
	buf := make([]byte, tap.MaxFrame)
	for {
		n, err := a.dev.ReadFrame(buf)
		if err != nil {
			select {
			case <-d.stop:
			default:
				d.log.Error("port lost, detaching it", "port", a.port.Name, "network", a.sw.Name(), "err", err)
				a.sw.RemovePort(a.port)
			}
			return
		}
		a.sw.Input(a.port, buf[:n])
	}
}

// Start runs the FDB ageing sweep until Close.
func (d *Datapath) Start(sweep time.Duration) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(sweep)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, sw := range d.networks {
					sw.Expire()
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
	var errs []error
	for _, a := range d.ports {
		if err := a.dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", a.port.Name, err))
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
	return errors.Join(errs...)
}

// PortInfo is one port's identity and counters, as `uswitch ports` shows.
type PortInfo struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	stats.Snapshot
}

// Ports returns every port of every network, in plan order.
func (d *Datapath) Ports() []PortInfo {
	var out []PortInfo
	for _, sw := range d.networks {
		for _, p := range sw.Ports() {
			out = append(out, PortInfo{Name: p.Name, Network: sw.Name(), Snapshot: p.Stats.Snapshot()})
		}
	}
	return out
}
