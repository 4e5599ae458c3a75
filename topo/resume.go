package topo

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/nsthread"
)

// A run after another (stopped leaving CNI attachments, or killed) does not
// recreate what still exists: the endpoints of the previous run's plan
// whose namespace and interfaces are still there (a TAP is persistent, a
// veth's host end outlives the process) and whose settings did not change
// are re-attached as they are (same name, addresses, MACs, published
// ports), their namespace and the processes and connections in it
// untouched. Endpoints the previous run had that the config does not name
// (added through the API, attachments) are kept too when they still exist.
// Everything else the previous run recorded is removed first.

// resumed is what Apply keeps of a previous run.
type resumed struct {
	plan *config.Plan    // the config's plan with the kept extra endpoints (and their networks)
	keep map[string]bool // endpoints re-attached, by name
	st   State           // the records of what is kept
}

// resume works out, from the previous run's state old, what of it plan
// keeps. Without a recorded plan nothing is kept.
func resume(plan *config.Plan, old *State) resumed {
	r := resumed{plan: plan, keep: map[string]bool{}}
	if old == nil || old.Plan == "" {
		return r
	}
	prev, err := config.ParseLive([]byte(old.Plan), "state")
	if err != nil {
		slog.Warn("the previous run's plan in the state file does not parse: recreating everything", "err", err)
		return r
	}
	alive := map[string]bool{}
	for i := range prev.Endpoints {
		ep := &prev.Endpoints[i]
		if ep.Mode != config.ModeContainer && stillThere(prev.Name, ep, old) {
			alive[ep.Name] = true
		}
	}
	for i := range prev.Endpoints {
		ep := &prev.Endpoints[i]
		if ep.Mode == config.ModeContainer && alive[ep.Container] && (ep.Name == ep.Netns || netnsExists(ep.Name) && old.hasNetns(ep.Name)) {
			alive[ep.Name] = true
		}
	}
	// The config's endpoints are kept when unchanged; the others (added
	// while it ran, attachments) when alive, with their networks.
	var extra []byte
	nets := map[string]bool{}
	for _, n := range plan.Networks {
		nets[n.Name] = true
	}
	for i := range prev.Endpoints {
		ep := &prev.Endpoints[i]
		if !alive[ep.Name] {
			continue
		}
		mine := slices.IndexFunc(plan.Endpoints, func(e config.Endpoint) bool { return e.Name == ep.Name })
		if mine >= 0 {
			if len(config.EndpointChanges(*ep, plan.Endpoints[mine])) == 0 {
				r.keep[ep.Name] = true
			}
			continue
		}
		for _, ifc := range ep.Interfaces {
			if !nets[ifc.Network] {
				if n := prev.Network(ifc.Network); n != nil {
					extra = append(append(extra, '\n'), config.NetworkSource(*n)...)
					nets[ifc.Network] = true
				}
			}
		}
		extra = append(append(extra, '\n'), config.EndpointSource(*ep)...)
		r.keep[ep.Name] = true
	}
	if len(extra) > 0 {
		merged, err := config.ParseLive(append(plan.Source(), extra...), "state")
		if err != nil {
			slog.Warn("the endpoints added to the previous run do not fit the config: removing them", "err", err)
			for i := range prev.Endpoints {
				if !slices.ContainsFunc(plan.Endpoints, func(e config.Endpoint) bool { return e.Name == prev.Endpoints[i].Name }) {
					delete(r.keep, prev.Endpoints[i].Name)
				}
			}
		} else {
			merged.Rules = plan.Rules
			r.plan = merged
		}
	}
	// The records of what is kept.
	r.st = State{Name: old.Name}
	keptNetns := map[string]bool{}
	for i := range r.plan.Endpoints {
		ep := &r.plan.Endpoints[i]
		if !r.keep[ep.Name] {
			continue
		}
		switch {
		case ep.IsAttachment():
		case namespaced(ep.Mode):
			keptNetns[ep.Netns] = true
		case ep.Mode == config.ModeContainer && ep.Name != ep.Netns:
			keptNetns[ep.Name] = true
		}
		for _, l := range endpointLinks(old.Name, ep) {
			if old.hasLink(l) {
				r.st.Links = append(r.st.Links, l)
			}
		}
	}
	for _, n := range old.Netns {
		if keptNetns[n] {
			r.st.Netns = append(r.st.Netns, n)
		}
	}
	for _, f := range old.Files {
		if keptNetns[filepath.Base(filepath.Dir(f))] {
			r.st.Files = append(r.st.Files, f)
		}
	}
	for _, d := range old.Dirs {
		if d == etcNetnsDir && len(r.st.Files) > 0 || keptNetns[filepath.Base(d)] && filepath.Dir(d) == etcNetnsDir {
			r.st.Dirs = append(r.st.Dirs, d)
		}
	}
	return r
}

// rest is old without what r keeps: what Apply removes.
func (r resumed) rest(old *State) *State {
	s := *old
	s.Netns = slices.DeleteFunc(slices.Clone(old.Netns), func(n string) bool { return slices.Contains(r.st.Netns, n) })
	s.Links = slices.DeleteFunc(slices.Clone(old.Links), func(l LinkRef) bool { return slices.Contains(r.st.Links, l) })
	s.Files = slices.DeleteFunc(slices.Clone(old.Files), func(f string) bool { return slices.Contains(r.st.Files, f) })
	s.Dirs = slices.DeleteFunc(slices.Clone(old.Dirs), func(d string) bool { return slices.Contains(r.st.Dirs, d) })
	return &s
}

// stillThere reports whether endpoint ep of the previous run (of instance
// instance) still has its namespace and interfaces.
func stillThere(instance string, ep *config.Endpoint, old *State) bool {
	switch {
	case ep.Mode == config.ModeHost:
		return false // nothing of its own: made again at no cost
	case ep.IsAttachment():
		if _, err := os.Stat(ep.NetnsPath); err != nil {
			return false
		}
	case !old.hasNetns(ep.Netns) || !netnsExists(ep.Netns):
		return false
	}
	if ep.Mode != config.ModeBridge {
		return true
	}
	for _, l := range endpointLinks(instance, ep) {
		if !old.hasLink(l) || !linkExists(l) {
			return false
		}
	}
	if ep.Link == config.LinkVeth {
		return true
	}
	// TAPs: each interface still in the namespace, a TAP with its MAC.
	ns, err := endpointNetns(ep)
	if err != nil {
		return false
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	for _, ifc := range ep.Interfaces {
		l, err := retryDump(func() (netlink.Link, error) { return h.LinkByName(ifc.Name) })
		if err != nil || l.Type() != "tuntap" || !strings.EqualFold(l.Attrs().HardwareAddr.String(), ifc.MAC.String()) {
			return false
		}
	}
	return true
}

// reattach opens the devices of an endpoint of the previous run that still
// exist: its persistent TAPs, from inside their namespace, or its veths'
// host ends.
func (t *Topology) reattach(p *config.Plan, ep *config.Endpoint) error {
	if ep.Mode != config.ModeBridge {
		return nil
	}
	ns, err := endpointNetns(ep)
	if err != nil {
		return err
	}
	defer ns.Close()
	for _, ifc := range ep.Interfaces {
		pd := PortDev{Port: ifc.Port, Network: ifc.Network, Endpoint: ep.Name, Netns: ep.Netns, Ifname: ifc.Name, Link: ep.Link}
		if ep.Link == config.LinkVeth {
			host := HostLinkName(p.Name, ifc.Port)
			pd.HostLink = host
			hl, err := retryDump(func() (netlink.Link, error) { return netlink.LinkByName(host) })
			if err != nil {
				return fmt.Errorf("host end %s: %w", host, err)
			}
			if pd.Dev, err = t.openPacket(host, hl.Attrs().Index, p.Defaults.Offload); err != nil {
				return err
			}
		} else {
			pd.Link = config.LinkTAP
			err := nsthread.In(ns, func() error {
				var err error
				pd.Dev, err = t.openTAP(ifc.Name, p.Defaults.Offload)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", ifc.Name, err)
			}
		}
		t.mu.Lock()
		t.Ports = append(t.Ports, pd)
		t.mu.Unlock()
	}
	// Its aliases may have changed: /etc/netns/<ns>/hosts follows.
	return t.UpdateEndpointFiles(p, ep)
}

// attachmentRecords are the links of p's attachments that s records: what
// a stop leaves to their runtime.
func attachmentRecords(instance string, p *config.Plan, s *State) []LinkRef {
	if p == nil {
		return nil
	}
	var out []LinkRef
	for i := range p.Endpoints {
		if ep := &p.Endpoints[i]; ep.IsAttachment() {
			for _, l := range endpointLinks(instance, ep) {
				if s.hasLink(l) {
					out = append(out, l)
				}
			}
		}
	}
	return out
}
