package topo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/tap"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// Topology is what Apply made for one instance. Close removes it.
type Topology struct {
	Name  string    // the instance (plan) name
	Ports []PortDev // one per bridge-mode interface, in plan order
	// Uplink is the router side of the uplink TAP (nil without [uplink]);
	// its other side, <name>-up, is the host's interface.
	Uplink tap.Port

	mu     sync.Mutex
	plan   *config.Plan      // the running plan (Apply's, then RecordPlan's)
	path   string            // state file
	polled bool              // Options.Polled
	queues int               // Options.Queues
	veth   tap.PacketOptions // Options.VethRing and VethQdiscBypass
	st     State
	// record's group commit: changes counts changes to st, written the
	// changes the file holds; writing is set while one goroutine writes.
	changes, written int
	writing          bool
	wrote            *sync.Cond // on mu: a write ended
	closed           bool
	err              error
}

// PortDev is the device behind one switch port.
type PortDev struct {
	Port     string   // switch port name (config.Interface.Port): "web", "web/eth1"
	Network  string   // network name
	Endpoint string   // endpoint name
	Netns    string   // namespace holding the interface
	Ifname   string   // interface name inside the namespace: "eth0"
	Link     string   // config.LinkTAP or config.LinkVeth
	HostLink string   // veth only: the host end the AF_PACKET socket reads
	Dev      tap.Port // *tap.TAP, *tap.VnetTAP, *tap.Packet or *tap.PacketQueues
}

// Plan returns the plan the topology runs: the config's, with what a
// previous run added and Apply re-attached.
func (t *Topology) Plan() *config.Plan {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.plan
}

// State returns a copy of what the topology recorded in its state file.
func (t *Topology) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.st
	s.Netns = append([]string(nil), s.Netns...)
	s.Links = append([]LinkRef(nil), s.Links...)
	s.Files = append([]string(nil), s.Files...)
	s.Dirs = append([]string(nil), s.Dirs...)
	return s
}

// record adds objects to the state and writes the state file, before the
// objects are created: it returns once a write that holds fn's change is
// done. The endpoints Apply makes at once record together (group commit):
// a change made while another goroutine writes the file waits for that
// write to end and goes, with every other change made meanwhile, in the
// next one. Each write is of the whole file (a temporary file renamed over
// it, about 2 ms on ext4 at 200 endpoints), so one write per change made
// the file the serial step of start-up.
func (t *Topology) record(fn func(s *State)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wrote == nil {
		t.wrote = sync.NewCond(&t.mu)
	}
	fn(&t.st)
	t.changes++
	mine := t.changes
	for t.written < mine {
		if t.writing {
			t.wrote.Wait()
			continue
		}
		// This goroutine writes everything changed so far. Another
		// that fails to write leaves its changes to the next writer.
		t.writing = true
		upTo := t.changes
		b, err := marshalState(&t.st)
		t.mu.Unlock()
		if err == nil {
			err = writeStateFile(t.path, b)
		}
		t.mu.Lock()
		t.writing = false
		if err == nil {
			t.written = upTo
		}
		t.wrote.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// Apply makes what plan needs in the kernel. It first removes what a
// previous run of the same instance left behind (from its state file); it
// refuses, creating nothing, when a namespace or host link it needs exists
// but is not in that state file. Each namespace, host link, file and
// directory is recorded in the state file before it is created, so a kill
// at any point leaves a state Down can clean. On error Apply removes what
// it made and returns the error.
//
// Per endpoint mode: bridge gets a namespace with lo up, one TAP or veth
// per interface (address, MAC, MTU, up), a default route via the first
// interface's gateway and /etc/netns/<ns>/{hosts,hostname,resolv.conf};
// none gets a namespace with lo up only; host and container get nothing
// of their own. With [uplink], a TAP named <name>-up carries host_address
// in the uplink's namespace (created if missing, and then removed at
// teardown), with routes to every non-internal subnet via the router's
// address when uplink.routes is set; the routes go with the TAP.
//
// Apply must run in the namespace uswitch works in (normally the root
// namespace), and the caller should hold Lock(plan.Name).
func Apply(ctx context.Context, plan *config.Plan, opt Options) (*Topology, error) {
	if plan == nil {
		return nil, errors.New("topo: nil plan")
	}
	if err := checkPlan(plan); err != nil {
		return nil, fmt.Errorf("instance %q: %w", plan.Name, err)
	}
	old, err := ReadState(plan.Name, opt)
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", plan.Name, err)
	}
	r := resume(plan, old)
	plan = r.plan
	if err := checkForeign(plan, old); err != nil {
		return nil, fmt.Errorf("instance %q: %w", plan.Name, err)
	}
	if old != nil {
		rest := r.rest(old)
		slog.Info("removing what a previous run left behind", "instance", plan.Name, "pid", old.PID,
			"netns", rest.Netns, "links", len(rest.Links), "files", len(rest.Files), "reattached", len(r.keep))
		if err := teardown(rest); err != nil {
			return nil, fmt.Errorf("instance %q: removing what a previous run left behind: %w", plan.Name, err)
		}
	}
	st := r.st
	st.Name, st.PID, st.Plan = plan.Name, os.Getpid(), string(plan.Source())
	t := &Topology{Name: plan.Name, plan: plan, path: StatePath(plan.Name, opt), polled: opt.Polled, queues: opt.Queues, st: st,
		veth: tap.PacketOptions{Ring: opt.VethRing, QdiscBypass: opt.VethQdiscBypass}}
	if err := t.record(func(*State) {}); err != nil {
		return nil, fmt.Errorf("instance %q: %w", plan.Name, err)
	}
	if err := t.build(ctx, plan, r.keep); err != nil {
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("removing what was made: %w", cerr))
		}
		return nil, fmt.Errorf("instance %q: %w", plan.Name, err)
	}
	return t, nil
}

// Close closes the port devices and removes everything the topology made,
// then its state file. It is idempotent and tries every object, joining
// the errors; on error the state file stays so Down can retry.
func (t *Topology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.err
	}
	t.closed = true
	t.mu.Unlock()

	var errs []error
	for _, p := range t.Ports {
		if err := p.Dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", p.Port, err))
		}
	}
	if t.Uplink != nil {
		if err := t.Uplink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("uplink: %w", err))
		}
	}
	// Attachments belong to their runtime: their links stay, and so does
	// a state file naming them, for the next run (which re-attaches them)
	// or down.
	st := t.State()
	keep := attachmentRecords(t.Name, t.Plan(), &st)
	st.Links = slices.DeleteFunc(st.Links, func(l LinkRef) bool { return slices.Contains(keep, l) })
	if err := teardown(&st); err != nil {
		errs = append(errs, err)
	} else if len(keep) > 0 {
		if err := writeState(t.path, &State{Name: st.Name, PID: st.PID, Links: keep, Plan: st.Plan}); err != nil {
			errs = append(errs, err)
		}
	} else if err := os.Remove(t.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("state file: %w", err))
	}
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("instance %q: %w", t.Name, err)
	}
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	return err
}

// buildWorkers is how many endpoints Apply makes at once.
const buildWorkers = 8

// unrecordNetns takes back the record of a namespace that turned out to be
// someone else's (created meanwhile), so teardown leaves it alone.
func (t *Topology) unrecordNetns(name string) {
	t.record(func(s *State) {
		if i := slices.Index(s.Netns, name); i >= 0 {
			s.Netns = slices.Delete(s.Netns, i, i+1)
		}
	})
}

// sortPorts puts t.Ports in plan order (endpoints made in parallel append
// theirs as they finish).
func (t *Topology) sortPorts(p *config.Plan) {
	rank := map[string]int{}
	for i := range p.Endpoints {
		for _, ifc := range p.Endpoints[i].Interfaces {
			rank[ifc.Port] = len(rank)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	slices.SortStableFunc(t.Ports, func(a, b PortDev) int { return rank[a.Port] - rank[b.Port] })
}

// namespaced reports whether mode gets a namespace of its own.
func namespaced(mode string) bool { return mode == config.ModeBridge || mode == config.ModeNone }

// checkPlan rejects, before anything is made, what topo cannot apply.
func checkPlan(p *config.Plan) error {
	if err := validName(p.Name); err != nil {
		return fmt.Errorf("instance name: %w", err)
	}
	byName := map[string]*config.Endpoint{}
	for i := range p.Endpoints {
		byName[p.Endpoints[i].Name] = &p.Endpoints[i]
	}
	nsSeen := map[string]string{}
	hostSeen := map[string]string{}
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		switch {
		case ep.IsAttachment():
		case ep.Mode == config.ModeBridge || ep.Mode == config.ModeNone:
			if err := validName(ep.Netns); err != nil {
				return fmt.Errorf("endpoint %q: netns: %w", ep.Name, err)
			}
			if other, dup := nsSeen[ep.Netns]; dup {
				return fmt.Errorf("endpoint %q: netns %q is also endpoint %q's", ep.Name, ep.Netns, other)
			}
			nsSeen[ep.Netns] = ep.Name
		case ep.Mode == config.ModeHost:
		case ep.Mode == config.ModeContainer:
			if _, ok := byName[ep.Container]; !ok {
				return fmt.Errorf("endpoint %q: container:%s names no endpoint", ep.Name, ep.Container)
			}
		default:
			return fmt.Errorf("endpoint %q: unknown mode %q", ep.Name, ep.Mode)
		}
		if ep.Mode != config.ModeBridge {
			continue
		}
		switch ep.Link {
		case "", config.LinkTAP, config.LinkVeth:
		default:
			return fmt.Errorf("endpoint %q: unknown link %q", ep.Name, ep.Link)
		}
		for _, ifc := range ep.Interfaces {
			if err := validIfname(ifc.Name); err != nil {
				return fmt.Errorf("endpoint %q: %w", ep.Name, err)
			}
			if ep.Link == config.LinkVeth {
				h := HostLinkName(p.Name, ifc.Port)
				if other, dup := hostSeen[h]; dup {
					return fmt.Errorf("endpoint %q: host link name %q of port %q collides with port %q", ep.Name, h, ifc.Port, other)
				}
				hostSeen[h] = ifc.Port
			}
		}
	}
	return nil
}

// checkForeign fails if a namespace or host link the plan needs exists but
// was not made by this instance (as far as its state file old says).
func checkForeign(p *config.Plan, old *State) error {
	if u := p.Uplink; u != nil {
		ref := LinkRef{Name: u.HostDevice, Netns: u.Netns}
		if linkExists(ref) && !old.hasLink(ref) {
			return fmt.Errorf("link %q already exists and was not made by uswitch instance %q", u.HostDevice, p.Name)
		}
	}
	for _, ep := range p.Endpoints {
		if ep.Mode == config.ModeContainer && netnsExists(ep.Name) && !old.hasNetns(ep.Name) {
			return fmt.Errorf("netns %q already exists and was not made by uswitch instance %q", ep.Name, p.Name)
		}
		if !namespaced(ep.Mode) || ep.IsAttachment() {
			continue
		}
		if netnsExists(ep.Netns) && !old.hasNetns(ep.Netns) {
			return fmt.Errorf("netns %q already exists and was not made by uswitch instance %q", ep.Netns, p.Name)
		}
		if ep.Mode != config.ModeBridge || ep.Link != config.LinkVeth {
			continue
		}
		for _, ifc := range ep.Interfaces {
			ref := LinkRef{Name: HostLinkName(p.Name, ifc.Port)}
			_, err := retryDump(func() (netlink.Link, error) { return netlink.LinkByName(ref.Name) })
			if err == nil && !old.hasLink(ref) {
				return fmt.Errorf("link %q already exists and was not made by uswitch instance %q", ref.Name, p.Name)
			}
		}
	}
	return nil
}

// build makes every endpoint's namespace and links. Only bridge and none
// endpoints make anything; a container endpoint shares its target's
// namespace (which this loop creates wherever the target is in the plan)
// and a host endpoint stays in the root namespace.
func (t *Topology) build(ctx context.Context, p *config.Plan, keep map[string]bool) error {
	// New endpoints are made by buildWorkers goroutines at once: most of
	// the time goes to the kernel (namespace creation, RCU waits), which
	// overlaps. Each object is still recorded before it is made; the
	// records of endpoints made at once share state file writes (record).
	jobs := make(chan *config.Endpoint)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	for range buildWorkers {
		wg.Go(func() {
			for ep := range jobs {
				if err := t.addEndpoint(ctx, p, ep); err != nil {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("endpoint %q: %w", ep.Name, err))
					errMu.Unlock()
				}
			}
		})
	}
	var err error
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if !namespaced(ep.Mode) {
			continue
		}
		if err = ctx.Err(); err != nil {
			break
		}
		errMu.Lock()
		failed := len(errs) > 0
		errMu.Unlock()
		if failed {
			break
		}
		switch {
		case keep[ep.Name]:
			err = t.reattach(p, ep)
		case ep.IsAttachment():
			err = t.addAttachment(p, ep)
		default:
			jobs <- ep
			continue
		}
		if err != nil {
			err = fmt.Errorf("endpoint %q: %w", ep.Name, err)
			break
		}
	}
	close(jobs)
	wg.Wait()
	t.sortPorts(p)
	if err := errors.Join(append(errs, err)...); err != nil {
		return err
	}
	// Container-mode endpoints: their name becomes another `ip netns` name
	// of their target's namespace, made now that every target exists.
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if ep.Mode != config.ModeContainer || ep.Name == ep.Netns || keep[ep.Name] {
			continue
		}
		if err := t.record(func(s *State) { s.Netns = append(s.Netns, ep.Name) }); err != nil {
			return err
		}
		if err := aliasNetns(ep.Name, ep.Netns); err != nil {
			if errors.Is(err, fs.ErrExist) {
				t.unrecordNetns(ep.Name)
				return fmt.Errorf("endpoint %q: netns %q already exists and was not made by uswitch instance %q", ep.Name, ep.Name, p.Name)
			}
			return fmt.Errorf("endpoint %q: %w", ep.Name, err)
		}
	}
	if p.Uplink != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := t.addUplink(p); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	return nil
}

// addUplink opens the uplink TAP, moves it into the uplink's namespace if
// one is named, and configures the host side there: host_address, up, and
// the routes to the instance's subnets.
func (t *Topology) addUplink(p *config.Plan) error {
	u := p.Uplink
	h := &netlink.Handle{} // the namespace uswitch runs in
	if u.Netns != "" {
		if !netnsExists(u.Netns) {
			if err := t.record(func(s *State) { s.Netns = append(s.Netns, u.Netns) }); err != nil {
				return err
			}
			if err := createNetns(u.Netns); err != nil {
				return fmt.Errorf("create netns %q: %w", u.Netns, err)
			}
		}
		ns, err := openNetns(u.Netns)
		if err != nil {
			return err
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return fmt.Errorf("netns %q: netlink: %w", u.Netns, err)
		}
		defer h.Close()
		if lo, err := retryDump(func() (netlink.Link, error) { return h.LinkByName("lo") }); err == nil {
			_ = h.LinkSetUp(lo)
		}
	}
	ref := LinkRef{Name: u.HostDevice, Netns: u.Netns}
	if err := t.record(func(s *State) { s.Links = append(s.Links, ref) }); err != nil {
		return err
	}
	dev, err := t.openTAP(u.HostDevice, p.Defaults.Offload)
	if err != nil {
		return err
	}
	t.Uplink = dev
	l, err := retryDump(func() (netlink.Link, error) { return netlink.LinkByName(u.HostDevice) })
	if err != nil {
		return fmt.Errorf("TAP %s: %w", u.HostDevice, err)
	}
	if u.Netns != "" {
		ns, err := openNetns(u.Netns)
		if err != nil {
			return err
		}
		err = netlink.LinkSetNsFd(l, int(ns))
		ns.Close()
		if err != nil {
			return fmt.Errorf("TAP %s: move to netns %q: %w", u.HostDevice, u.Netns, err)
		}
	}
	if err := configureIface(h, config.Interface{Name: u.HostDevice, Prefix: u.HostAddress, Prefix6: u.HostAddress6, MTU: 1500}); err != nil {
		return fmt.Errorf("%s: %w", u.HostDevice, err)
	}
	if !u.Routes {
		return nil
	}
	l, err = retryDump(func() (netlink.Link, error) { return h.LinkByName(u.HostDevice) })
	if err != nil {
		return fmt.Errorf("%s: %w", u.HostDevice, err)
	}
	for _, n := range p.Networks {
		if n.Internal {
			continue
		}
		for _, rt := range uplinkRoutes(u, n, l) {
			if err := h.RouteAdd(rt); err != nil {
				return fmt.Errorf("route %s via %s dev %s: %w", rt.Dst, rt.Gw, u.HostDevice, err)
			}
		}
	}
	return nil
}

// uplinkRoutes are the host side's routes to network n through the uplink
// (link l): to its subnet via address, and to its subnet6 via address6
// when both have IPv6.
func uplinkRoutes(u *config.Uplink, n config.Network, l netlink.Link) []*netlink.Route {
	rts := []*netlink.Route{{LinkIndex: l.Attrs().Index, Dst: ipNet(n.Subnet), Gw: net.IP(u.Address.Addr().AsSlice())}}
	if u.Address6.IsValid() && n.Subnet6.IsValid() {
		rts = append(rts, &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(n.Subnet6), Gw: net.IP(u.Address6.Addr().AsSlice())})
	}
	return rts
}

// ipNet is p as netlink takes it.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addEndpoint makes the namespace of a bridge or none endpoint and, for
// bridge, its interfaces, default route and /etc/netns files.
func (t *Topology) addEndpoint(ctx context.Context, p *config.Plan, ep *config.Endpoint) error {
	// One state file write records everything the endpoint makes: its
	// namespace, its veths' host ends and its /etc/netns files.
	var links []LinkRef
	var nf netnsFiles
	if ep.Mode == config.ModeBridge {
		if ep.Link == config.LinkVeth {
			for _, ifc := range ep.Interfaces {
				links = append(links, LinkRef{Name: HostLinkName(p.Name, ifc.Port)})
			}
		}
		var err error
		if nf, err = t.netnsFiles(p, ep); err != nil {
			return err
		}
	}
	if err := t.record(func(s *State) {
		s.Netns = append(s.Netns, ep.Netns)
		s.Links = append(s.Links, links...)
		nf.record(s)
	}); err != nil {
		return err
	}
	if err := createNetns(ep.Netns); err != nil {
		if errors.Is(err, fs.ErrExist) { // made by someone else meanwhile: not ours to delete
			t.record(func(s *State) {
				s.Netns = slices.DeleteFunc(s.Netns, func(n string) bool { return n == ep.Netns })
				s.Links = slices.DeleteFunc(s.Links, func(l LinkRef) bool { return slices.Contains(links, l) })
				nf.unrecord(s)
			})
			return fmt.Errorf("netns %q already exists and was not made by uswitch instance %q", ep.Netns, p.Name)
		}
		return fmt.Errorf("create netns %q: %w", ep.Netns, err)
	}
	ns, err := openNetns(ep.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netns %q: netlink: %w", ep.Netns, err)
	}
	defer h.Close()
	lo, err := retryDump(func() (netlink.Link, error) { return h.LinkByName("lo") })
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netns %q: lo up: %w", ep.Netns, err)
	}
	if ep.Mode != config.ModeBridge {
		return nil
	}

	for _, ifc := range ep.Interfaces {
		if err := ctx.Err(); err != nil {
			return err
		}
		pd := PortDev{Port: ifc.Port, Network: ifc.Network, Endpoint: ep.Name, Netns: ep.Netns, Ifname: ifc.Name, Link: ep.Link}
		var err error
		if ep.Link == config.LinkVeth {
			err = t.addVeth(p, ns, h, ifc, &pd)
		} else {
			pd.Link = config.LinkTAP
			err = t.addTAP(p, ns, h, ifc, &pd)
		}
		if pd.Dev != nil {
			t.mu.Lock()
			t.Ports = append(t.Ports, pd)
			t.mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", ifc.Name, pd.Link, err)
		}
	}
	if len(ep.Interfaces) > 0 {
		if err := defaultRoutes(h, ep.Interfaces[0], false); err != nil {
			return err
		}
	}
	return nf.write()
}

// defaultRoutes adds the default routes of ifc's network in h's namespace:
// via its gateway and, on a dual-stack network, via its gateway6. With
// keepExisting, a default route the namespace already has (another
// interface's) stays and is no error.
func defaultRoutes(h *netlink.Handle, ifc config.Interface, keepExisting bool) error {
	if !ifc.Gateway.IsValid() && !ifc.Prefix6.IsValid() {
		return nil
	}
	l, err := retryDump(func() (netlink.Link, error) { return h.LinkByName(ifc.Name) })
	if err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	add := func(gw netip.Addr, any netip.Prefix) error {
		dst := &net.IPNet{IP: net.IP(any.Addr().AsSlice()), Mask: net.CIDRMask(0, any.Addr().BitLen())}
		err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.IP(gw.AsSlice()), Scope: netlink.SCOPE_UNIVERSE})
		if err != nil && !(keepExisting && errors.Is(err, fs.ErrExist)) {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
		return nil
	}
	if ifc.Gateway.IsValid() {
		if err := add(ifc.Gateway, netip.PrefixFrom(netip.IPv4Unspecified(), 0)); err != nil {
			return err
		}
	}
	if ifc.Prefix6.IsValid() && ifc.Gateway6.IsValid() {
		return add(ifc.Gateway6, netip.PrefixFrom(netip.IPv6Unspecified(), 0))
	}
	return nil
}

// addTAP opens a TAP inside ns, under its final name, and configures it
// there as ifc. A TAP is made in the namespace of the thread that opens
// /dev/net/tun, so nothing is moved: moving a device to another namespace
// waits for RCU grace periods (about 16 ms each on a 2-vCPU VM, most of
// the start-up time of 200 endpoints when every TAP was made in the root
// namespace and moved), and no temporary name is needed to keep clear of
// the root namespace's links.
func (t *Topology) addTAP(p *config.Plan, ns netns.NsHandle, h *netlink.Handle, ifc config.Interface, pd *PortDev) error {
	err := nsthread.In(ns, func() error {
		dev, err := t.openTAP(ifc.Name, p.Defaults.Offload)
		if err != nil {
			return err
		}
		pd.Dev = dev // from here on, Close closes it (and the device vanishes)
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %q: %w", pd.Netns, err)
	}
	if err := configureIface(h, ifc); err != nil {
		return err
	}
	if err := refuseRA(ns, ifc.Name); err != nil {
		return err
	}
	// The interface outlives the process (a crash, or a stop that leaves
	// attachments), so the next run attaches to it again instead of making
	// a new one; it goes with its namespace or when deleted.
	if vt, ok := pd.Dev.(*tap.VnetTAP); ok {
		return vt.SetPersist(true)
	}
	return nil
}

// addVeth creates a veth pair whose peer is made directly inside ns as
// ifc.Name, configures the peer, turns off its offloads, and opens an
// AF_PACKET socket on the host end.
func (t *Topology) addVeth(p *config.Plan, ns netns.NsHandle, h *netlink.Handle, ifc config.Interface, pd *PortDev) error {
	host := HostLinkName(p.Name, ifc.Port)
	pd.HostLink = host
	ref := LinkRef{Name: host} // recorded by the caller (addEndpoint, addAttachment)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = host
	if ifc.MTU > 0 {
		attrs.MTU = ifc.MTU
	}
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: ifc.Name, PeerTxQLen: -1, PeerNamespace: netlink.NsFd(int(ns))}
	if !ifc.MAC.IsZero() {
		veth.PeerHardwareAddr = net.HardwareAddr(ifc.MAC[:])
	}
	if err := netlink.LinkAdd(veth); err != nil {
		if errors.Is(err, fs.ErrExist) { // appeared meanwhile: not ours to delete
			t.record(func(s *State) {
				if i := slices.Index(s.Links, ref); i >= 0 {
					s.Links = slices.Delete(s.Links, i, i+1)
				}
			})
			return fmt.Errorf("link %q already exists and was not made by uswitch instance %q", host, p.Name)
		}
		return fmt.Errorf("create veth %s/%s: %w", host, ifc.Name, err)
	}
	if err := configureIface(h, ifc); err != nil {
		return err
	}
	if err := refuseRA(ns, ifc.Name); err != nil {
		return err
	}
	// With offloads the host end's packet socket reads the namespace's
	// super-frames and partial checksums with their vnet headers; without,
	// the namespace side must send only complete wire frames.
	if !p.Defaults.Offload {
		if err := nsthread.In(ns, func() error { return tap.DisableOffloads(ifc.Name) }); err != nil {
			return fmt.Errorf("netns %q: %w", pd.Netns, err)
		}
	}

	// The host end carries no address and must stay silent: no ARP, no
	// IPv6 link-local address (so no DAD, router or MLD solicitations).
	hl, err := retryDump(func() (netlink.Link, error) { return netlink.LinkByName(host) })
	if err != nil {
		return fmt.Errorf("host end %s: %w", host, err)
	}
	if err := netlink.LinkSetAlias(hl, hostLinkAlias(p.Name, ifc.Port)); err != nil {
		return fmt.Errorf("host end %s: alias: %w", host, err)
	}
	if err := netlink.LinkSetARPOff(hl); err != nil {
		return fmt.Errorf("host end %s: arp off: %w", host, err)
	}
	quietIPv6(&netlink.Handle{}, hl)
	if !p.Defaults.Offload {
		if err := tap.DisableOffloads(host); err != nil {
			return fmt.Errorf("host end: %w", err)
		}
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return fmt.Errorf("host end %s: up: %w", host, err)
	}
	dev, err := t.openPacket(host, hl.Attrs().Index, p.Defaults.Offload)
	if err != nil {
		return err
	}
	pd.Dev = dev
	return nil
}

// openPacket opens the packet socket of a veth port's host end: polled,
// with Options.Queues > 1, a fanout group of that many (tap.PacketQueues).
func (t *Topology) openPacket(host string, ifindex int, offload bool) (tap.Port, error) {
	opt := t.veth
	opt.Vnet, opt.Polled = offload, t.polled
	return tap.OpenPacketQueues(host, ifindex, opt, t.queues)
}

// configureIface gives the link ifc.Name in h's namespace its MAC, MTU and
// address, and brings it up.
func configureIface(h *netlink.Handle, ifc config.Interface) error {
	l, err := retryDump(func() (netlink.Link, error) { return h.LinkByName(ifc.Name) })
	if err != nil {
		return err
	}
	if !ifc.MAC.IsZero() {
		if err := h.LinkSetHardwareAddr(l, net.HardwareAddr(ifc.MAC[:])); err != nil {
			return fmt.Errorf("set MAC %s: %w", ifc.MAC, err)
		}
	}
	if ifc.MTU > 0 {
		if err := h.LinkSetMTU(l, ifc.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", ifc.MTU, err)
		}
	}
	quietIPv6(h, l)
	addrs := []netip.Prefix{ifc.Prefix}
	if ifc.Prefix6.IsValid() {
		// The kernel generates no link-local address (quietIPv6): an
		// endpoint with IPv6 gets the EUI-64 one it would have made, which
		// port security lets through, and both go without duplicate
		// address detection, usable at once as Docker's are. (The
		// uplink's host side, whose MAC is the kernel's, has its global
		// address only.)
		if !ifc.MAC.IsZero() {
			addrs = append(addrs, netip.PrefixFrom(netip.AddrFrom16(ifc.MAC.LinkLocal6()), 64))
		}
		addrs = append(addrs, ifc.Prefix6)
	}
	for _, pfx := range addrs {
		if !pfx.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(pfx)}
		if pfx.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("add address %s: %w", pfx, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	return nil
}

// quietIPv6 keeps the kernel from giving l an IPv6 link-local address, so
// it sends no DAD, router solicitations or MLD reports (like Docker, which
// disables IPv6 on container interfaces unless IPv6 is configured).
// Best effort: a kernel without IPv6 has nothing to silence.
func quietIPv6(h *netlink.Handle, l netlink.Link) {
	const addrGenModeNone = 1 // IN6_ADDR_GEN_MODE_NONE
	if err := h.LinkSetIP6AddrGenMode(l, addrGenModeNone); err != nil {
		slog.Debug("cannot disable IPv6 address generation", "link", l.Attrs().Name, "err", err)
	}
}

// openTAP opens a TAP for a port: with vnet headers and offloads when the
// plan has them on (polled when the topology's ports are, with
// Options.Queues queues), else the plain kind. An existing TAP (a restart
// in place) is attached with the queueing it was made with.
func (t *Topology) openTAP(name string, offload bool) (tap.Port, error) {
	if offload {
		dev, err := tap.OpenVnetTAPQueues(name, t.polled, max(t.queues, 1))
		if err != nil {
			return nil, err
		}
		return dev, nil
	}
	dev, err := tap.OpenTAP(name)
	if err != nil {
		return nil, err
	}
	return dev, nil
}
