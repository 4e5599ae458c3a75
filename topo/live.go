package topo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/config"
)

// Changes to a running topology. The caller serializes them (one at a
// time) and passes the plan that holds the change: the endpoint added, or
// the network whose routes are added.

// AddEndpoint makes endpoint ep of plan p as Apply would have: a bridge or
// none endpoint's namespace, interfaces, default route and /etc/netns
// files; a container endpoint's second namespace name; an attachment's
// interface in its caller's namespace (lo up, address, default route; no
// files). Each object is recorded in the state file before it is made. It
// returns the endpoint's new port devices, which it also appends to
// t.Ports. On error it removes what it made.
func (t *Topology) AddEndpoint(ctx context.Context, p *config.Plan, ep *config.Endpoint) ([]PortDev, error) {
	n := len(t.ports())
	var err error
	switch {
	case ep.IsAttachment():
		err = t.addAttachment(p, ep)
	case namespaced(ep.Mode):
		if err = t.checkNew(p, ep); err == nil {
			err = t.addEndpoint(ctx, p, ep)
		}
	case ep.Mode == config.ModeContainer && ep.Name != ep.Netns:
		if netnsExists(ep.Name) {
			return nil, fmt.Errorf("endpoint %q: netns %q already exists and was not made by uswitch instance %q", ep.Name, ep.Name, p.Name)
		}
		if err = t.record(func(s *State) { s.Netns = append(s.Netns, ep.Name) }); err == nil {
			err = aliasNetns(ep.Name, ep.Netns)
		}
	}
	if err != nil {
		err = fmt.Errorf("endpoint %q: %w", ep.Name, err)
		if rerr := t.RemoveEndpoint(p, ep); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing what was made: %w", rerr))
		}
		return nil, err
	}
	return slices.Clone(t.ports()[n:]), nil
}

// ports returns t.Ports under the lock.
func (t *Topology) ports() []PortDev {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Ports
}

// checkNew refuses a namespace or veth host end of ep that exists but is
// not this instance's.
func (t *Topology) checkNew(p *config.Plan, ep *config.Endpoint) error {
	st := t.State()
	if netnsExists(ep.Netns) && !st.hasNetns(ep.Netns) {
		return fmt.Errorf("netns %q already exists and was not made by uswitch instance %q", ep.Netns, p.Name)
	}
	if ep.Mode == config.ModeBridge && ep.Link == config.LinkVeth {
		for _, ifc := range ep.Interfaces {
			ref := LinkRef{Name: HostLinkName(p.Name, ifc.Port)}
			if linkExists(ref) && !st.hasLink(ref) {
				return fmt.Errorf("link %q already exists and was not made by uswitch instance %q", ref.Name, p.Name)
			}
		}
	}
	return nil
}

// addAttachment makes an attachment's interface in the namespace at
// ep.NetnsPath, which belongs to the caller.
func (t *Topology) addAttachment(p *config.Plan, ep *config.Endpoint) error {
	if len(ep.Interfaces) != 1 {
		return errors.New("an attachment has one interface")
	}
	ns, err := netns.GetFromPath(ep.NetnsPath)
	if err != nil {
		return fmt.Errorf("netns_path %s: %w", ep.NetnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netns_path %s: netlink: %w", ep.NetnsPath, err)
	}
	defer h.Close()
	ifc := ep.Interfaces[0]
	if _, err := h.LinkByName(ifc.Name); err == nil {
		return fmt.Errorf("netns_path %s: interface %q already exists", ep.NetnsPath, ifc.Name)
	}
	lo, err := retryDump(func() (netlink.Link, error) { return h.LinkByName("lo") })
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netns_path %s: lo up: %w", ep.NetnsPath, err)
	}
	pd := PortDev{Port: ifc.Port, Network: ifc.Network, Endpoint: ep.Name, Ifname: ifc.Name, Link: ep.Link}
	if ep.Link == config.LinkVeth {
		ref := LinkRef{Name: HostLinkName(p.Name, ifc.Port)}
		if err = t.record(func(s *State) { s.Links = append(s.Links, ref) }); err == nil {
			err = t.addVeth(p, ns, h, ifc, &pd)
		}
	} else {
		pd.Link = config.LinkTAP
		// A persistent TAP in a namespace that is not ours: recorded, so
		// that down deletes it.
		ref := attachmentTAP(ep)
		if err = t.record(func(s *State) { s.Links = append(s.Links, ref) }); err == nil {
			err = t.addTAP(p, ns, h, ifc, &pd)
		}
	}
	if pd.Dev != nil {
		t.mu.Lock()
		t.Ports = append(t.Ports, pd)
		t.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", ifc.Name, pd.Link, err)
	}
	// A namespace with a default route already (another interface's)
	// keeps it.
	return defaultRoutes(h, ifc, true)
}

// RemoveEndpoint removes what AddEndpoint (or Apply) made for endpoint ep:
// it closes its port devices (a TAP vanishes with its descriptor), deletes
// its veth host ends, namespace and /etc/netns files, then forgets them in
// the state file. An attachment's namespace is the caller's: only our
// interface in it goes, and a namespace already gone is fine. Objects
// already gone are fine.
func (t *Topology) RemoveEndpoint(p *config.Plan, ep *config.Endpoint) error {
	var errs []error
	t.mu.Lock()
	var mine []PortDev
	t.Ports = slices.DeleteFunc(t.Ports, func(pd PortDev) bool {
		if pd.Endpoint == ep.Name {
			mine = append(mine, pd)
			return true
		}
		return false
	})
	t.mu.Unlock()
	for _, pd := range mine {
		// The datapath may have closed it already (Detach): Close is
		// idempotent.
		if err := pd.Dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", pd.Port, err))
		}
	}
	links := endpointLinks(p.Name, ep)
	for _, l := range links {
		if err := deleteLink(l); err != nil {
			errs = append(errs, fmt.Errorf("link %q: %w", l.Name, err))
		}
	}
	var nsName string
	switch {
	case ep.IsAttachment():
	case namespaced(ep.Mode):
		nsName = ep.Netns
	case ep.Mode == config.ModeContainer && ep.Name != ep.Netns:
		nsName = ep.Name
	}
	st := t.State()
	if nsName != "" && st.hasNetns(nsName) {
		if err := deleteNetns(nsName); err != nil {
			errs = append(errs, fmt.Errorf("netns %q: %w", nsName, err))
		}
	}
	var files, dirs []string
	if namespaced(ep.Mode) && !ep.IsAttachment() && ep.Netns != "" {
		dir := filepath.Join(etcNetnsDir, ep.Netns)
		for _, f := range st.Files {
			if filepath.Dir(f) == dir {
				if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
					continue
				}
				files = append(files, f)
			}
		}
		if slices.Contains(st.Dirs, dir) {
			if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(err) {
				errs = append(errs, err)
			} else {
				dirs = append(dirs, dir)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // the state keeps it all, for down
	}
	return t.record(func(s *State) {
		s.Links = slices.DeleteFunc(s.Links, func(l LinkRef) bool { return slices.Contains(links, l) })
		s.Netns = slices.DeleteFunc(s.Netns, func(n string) bool { return n == nsName })
		s.Files = slices.DeleteFunc(s.Files, func(f string) bool { return slices.Contains(files, f) })
		s.Dirs = slices.DeleteFunc(s.Dirs, func(d string) bool { return slices.Contains(dirs, d) })
	})
}

// endpointLinks are the links of ep recorded in the state: veth host ends,
// and an attachment's TAP in its namespace.
func endpointLinks(instance string, ep *config.Endpoint) []LinkRef {
	if ep.Mode != config.ModeBridge {
		return nil
	}
	if ep.Link != config.LinkVeth {
		if ep.IsAttachment() {
			return []LinkRef{attachmentTAP(ep)}
		}
		return nil
	}
	var links []LinkRef
	for _, ifc := range ep.Interfaces {
		links = append(links, LinkRef{Name: HostLinkName(instance, ifc.Port)})
	}
	return links
}

// attachmentTAP is the link of an attachment on a TAP.
func attachmentTAP(ep *config.Endpoint) LinkRef {
	return LinkRef{Name: ep.Interfaces[0].Name, NetnsPath: ep.NetnsPath}
}

// RecordPlan records p as the running plan in the state file: the next
// run re-attaches the endpoints it names that still exist. Record the plan
// with an endpoint before adding it, and without one after removing it.
func (t *Topology) RecordPlan(p *config.Plan) error {
	src := string(p.Source())
	t.mu.Lock()
	t.plan = p
	t.mu.Unlock()
	return t.record(func(s *State) { s.Plan = src })
}

// AddNetworkRoutes adds the uplink's host routes to network n's subnet and
// subnet6 (when the plan's uplink has routes and n is not internal), as
// Apply adds them for the networks it starts with. The routes go with the
// uplink's TAP.
func (t *Topology) AddNetworkRoutes(p *config.Plan, n config.Network) error {
	return t.networkRoute(p, n, true)
}

// RemoveNetworkRoutes removes what AddNetworkRoutes added; a route already
// gone is fine.
func (t *Topology) RemoveNetworkRoutes(p *config.Plan, n config.Network) error {
	return t.networkRoute(p, n, false)
}

// uplinkLink opens a netlink handle in the uplink's namespace and finds
// its host-side link; done closes what it opened.
func uplinkLink(u *config.Uplink) (h *netlink.Handle, l netlink.Link, done func(), err error) {
	h, done = &netlink.Handle{}, func() {}
	if u.Netns != "" {
		ns, err := openNetns(u.Netns)
		if err != nil {
			return nil, nil, nil, err
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return nil, nil, nil, fmt.Errorf("netns %q: netlink: %w", u.Netns, err)
		}
		done = h.Close
	}
	l, err = retryDump(func() (netlink.Link, error) { return h.LinkByName(u.HostDevice) })
	if err != nil {
		done()
		return nil, nil, nil, fmt.Errorf("%s: %w", u.HostDevice, err)
	}
	return h, l, done, nil
}

// restoreAddress6 puts host_address6 back on the uplink's host side, as
// Apply put it (without duplicate address detection): the kernel removes
// the IPv6 addresses of a link that goes down (keep_addr_on_down = 0).
func restoreAddress6(u *config.Uplink) error {
	if !u.HostAddress6.IsValid() {
		return nil
	}
	h, l, done, err := uplinkLink(u)
	if err != nil {
		return err
	}
	defer done()
	if err := h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(u.HostAddress6), Flags: unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("address %s dev %s: %w", u.HostAddress6, u.HostDevice, err)
	}
	return nil
}

func (t *Topology) networkRoute(p *config.Plan, n config.Network, add bool) error {
	u := p.Uplink
	if u == nil || !u.Routes || n.Internal {
		return nil
	}
	h, l, done, err := uplinkLink(u)
	if err != nil {
		return err
	}
	defer done()
	for _, rt := range uplinkRoutes(u, n, l) {
		if add {
			if err := h.RouteAdd(rt); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("route %s via %s dev %s: %w", rt.Dst, rt.Gw, u.HostDevice, err)
			}
			continue
		}
		if err := h.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s via %s dev %s: %w", rt.Dst, rt.Gw, u.HostDevice, err)
		}
	}
	return nil
}

// UpdateEndpointFiles rewrites the /etc/netns files of a bridge endpoint
// whose aliases changed (an attachment has none).
func (t *Topology) UpdateEndpointFiles(p *config.Plan, ep *config.Endpoint) error {
	if ep.Mode != config.ModeBridge || ep.IsAttachment() {
		return nil
	}
	return t.writeNetnsFiles(p, ep)
}
