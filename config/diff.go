package config

import (
	"fmt"
	"slices"
	"strings"
)

// Diff is what changes from one resolved plan to another, by network and
// endpoint: what `uswitch apply` does to a running instance.
type Diff struct {
	// Networks: removed, added, and changed in place (isolation,
	// masquerade, internal, dns: rules, routes and names only). A network
	// whose subnet, gateway or MTU changed is removed and added again,
	// with the endpoints on it.
	RemoveNetworks, AddNetworks, UpdateNetworks []Network
	// Endpoints: removed (gone, or recreated: listed again in
	// AddEndpoints), added, and updated in place (aliases, published
	// ports or port security only: namespace and connections untouched). Each holds the
	// endpoint as the old plan has it (removals) or as the new one has it.
	RemoveEndpoints, AddEndpoints, UpdateEndpoints []Endpoint
	// Changes lists them for people, in the order above.
	Changes []Change
}

// Change is one line of what apply did: "+ endpoint web", "- network
// back", "~ endpoint api (publish)".
type Change struct {
	Op     string   `json:"op"`   // "+", "-", "~"
	Kind   string   `json:"kind"` // "network" or "endpoint"
	Name   string   `json:"name"`
	Fields []string `json:"fields,omitempty"` // for "~": what changed; "recreated" when it was
}

func (c Change) String() string {
	s := c.Op + " " + c.Kind + " " + c.Name
	if len(c.Fields) > 0 {
		s += " (" + strings.Join(c.Fields, ", ") + ")"
	}
	return s
}

// Empty reports whether nothing changes.
func (d *Diff) Empty() bool { return len(d.Changes) == 0 }

// Compare returns what changes from the running plan old to next. It
// refuses (returning an error naming the key) what cannot change while the
// instance runs: the name, [defaults] fdb_ageing, fdb_max, conntrack_max
// and offload, [uplink] and [dns]. (busy_poll and cpu_latency are the
// process's settings; the caller decides.) [[rule]] changes need nothing of their
// own: the rule set is recompiled from next.
func Compare(old, next *Plan) (*Diff, error) {
	if err := fixed(old, next); err != nil {
		return nil, err
	}
	d := &Diff{}
	recreateNet := map[string]bool{}
	for _, n := range old.Networks {
		m := next.Network(n.Name)
		switch {
		case m == nil:
			d.RemoveNetworks = append(d.RemoveNetworks, n)
			d.Changes = append(d.Changes, Change{Op: "-", Kind: "network", Name: n.Name})
		case m.Subnet != n.Subnet || m.Gateway != n.Gateway || m.MTU != n.MTU || m.GatewayMAC != n.GatewayMAC ||
			m.Subnet6 != n.Subnet6 || m.Gateway6 != n.Gateway6:
			recreateNet[n.Name] = true
			d.RemoveNetworks = append(d.RemoveNetworks, n)
			d.AddNetworks = append(d.AddNetworks, *m)
			d.Changes = append(d.Changes, Change{Op: "~", Kind: "network", Name: n.Name, Fields: append(networkFields(n, *m), "recreated")})
		case *m != n:
			d.UpdateNetworks = append(d.UpdateNetworks, *m)
			d.Changes = append(d.Changes, Change{Op: "~", Kind: "network", Name: n.Name, Fields: networkFields(n, *m)})
		}
	}
	for _, m := range next.Networks {
		if old.Network(m.Name) == nil {
			d.AddNetworks = append(d.AddNetworks, m)
			d.Changes = append(d.Changes, Change{Op: "+", Kind: "network", Name: m.Name})
		}
	}
	oldEps := map[string]*Endpoint{}
	for i := range old.Endpoints {
		oldEps[old.Endpoints[i].Name] = &old.Endpoints[i]
	}
	nextEps := map[string]*Endpoint{}
	for i := range next.Endpoints {
		nextEps[next.Endpoints[i].Name] = &next.Endpoints[i]
	}
	// A container-mode endpoint goes and comes with its target.
	recreated := map[string]bool{}
	for _, e := range old.Endpoints {
		f := nextEps[e.Name]
		if f == nil {
			d.RemoveEndpoints = append(d.RemoveEndpoints, e)
			d.Changes = append(d.Changes, Change{Op: "-", Kind: "endpoint", Name: e.Name})
			continue
		}
		if fields := endpointFields(e, *f, recreateNet); len(fields) > 0 {
			recreated[e.Name] = true
			d.RemoveEndpoints = append(d.RemoveEndpoints, e)
			d.AddEndpoints = append(d.AddEndpoints, *f)
			d.Changes = append(d.Changes, Change{Op: "~", Kind: "endpoint", Name: e.Name, Fields: append(fields, "recreated")})
		}
	}
	for _, e := range old.Endpoints {
		f := nextEps[e.Name]
		if f == nil || recreated[e.Name] {
			continue
		}
		if e.Mode == ModeContainer && recreated[e.Container] {
			recreated[e.Name] = true
			d.RemoveEndpoints = append(d.RemoveEndpoints, e)
			d.AddEndpoints = append(d.AddEndpoints, *f)
			d.Changes = append(d.Changes, Change{Op: "~", Kind: "endpoint", Name: e.Name, Fields: []string{"container " + e.Container, "recreated"}})
			continue
		}
		var fields []string
		if !slices.Equal(e.Aliases, f.Aliases) {
			fields = append(fields, "aliases")
		}
		if !slices.EqualFunc(e.Publish, f.Publish, samePublish) {
			fields = append(fields, "publish")
		}
		if e.PortSecurity != f.PortSecurity {
			fields = append(fields, "port_security")
		}
		if len(fields) > 0 {
			d.UpdateEndpoints = append(d.UpdateEndpoints, *f)
			d.Changes = append(d.Changes, Change{Op: "~", Kind: "endpoint", Name: e.Name, Fields: fields})
		}
	}
	for _, f := range next.Endpoints {
		if oldEps[f.Name] == nil {
			d.AddEndpoints = append(d.AddEndpoints, f)
			d.Changes = append(d.Changes, Change{Op: "+", Kind: "endpoint", Name: f.Name})
		}
	}
	if !slices.EqualFunc(old.Rules, next.Rules, sameRule) {
		d.Changes = append(d.Changes, Change{Op: "~", Kind: "rules", Name: fmt.Sprintf("(%d)", len(next.Rules))})
	}
	return d, nil
}

// samePublish compares published ports as resolved (a host port picked
// from publish_range or given is the same port).
func samePublish(a, b Publish) bool {
	return a.HostPort == b.HostPort && a.ContainerPort == b.ContainerPort && a.Proto == b.Proto
}

// KeepHostPorts gives each published port of p whose host port was picked
// from publish_range the host port the same endpoint's same container port
// has in old (the running plan), when no other publish of p has it, so
// that applying a file again does not move published ports.
func (p *Plan) KeepHostPorts(old *Plan) {
	type hp struct {
		port  uint16
		proto string
	}
	used := map[hp]bool{}
	for _, e := range p.Endpoints {
		for _, pb := range e.Publish {
			used[hp{pb.HostPort, pb.Proto}] = true
		}
	}
	for i := range p.Endpoints {
		e := &p.Endpoints[i]
		j := slices.IndexFunc(old.Endpoints, func(o Endpoint) bool { return o.Name == e.Name })
		if j < 0 {
			continue
		}
		for k := range e.Publish {
			pb := &e.Publish[k]
			if !pb.Random {
				continue
			}
			for _, ob := range old.Endpoints[j].Publish {
				if ob.ContainerPort == pb.ContainerPort && ob.Proto == pb.Proto && ob.HostPort != pb.HostPort && !used[hp{ob.HostPort, ob.Proto}] {
					delete(used, hp{pb.HostPort, pb.Proto})
					pb.HostPort = ob.HostPort
					used[hp{ob.HostPort, ob.Proto}] = true
					break
				}
			}
		}
	}
}

// sameRule compares rules but for their lines.
func sameRule(a, b Rule) bool {
	a.Line, b.Line = 0, 0
	return a.Hook == b.Hook && a.Src == b.Src && a.Dst == b.Dst && a.Proto == b.Proto && a.Sport == b.Sport &&
		a.Dport == b.Dport && a.In == b.In && a.Out == b.Out && slices.Equal(a.State, b.State) && a.Action == b.Action && a.To == b.To
}

// fixed refuses a change of what a running instance cannot change.
func fixed(old, next *Plan) error {
	if old.Name != next.Name {
		return fmt.Errorf("name: %q cannot change while the instance runs (it is %q)", next.Name, old.Name)
	}
	o, n := old.Defaults, next.Defaults
	for _, k := range []struct {
		key  string
		same bool
	}{
		{"fdb_ageing", o.FDBAgeing == n.FDBAgeing},
		{"fdb_max", o.FDBMax == n.FDBMax},
		{"conntrack_max", o.ConntrackMax == n.ConntrackMax},
		{"offload", o.Offload == n.Offload},
	} {
		if !k.same {
			return fmt.Errorf("defaults.%s cannot change while the instance runs: restart it (uswitch run) to change it", k.key)
		}
	}
	switch ou, nu := old.Uplink, next.Uplink; {
	case (ou == nil) != (nu == nil):
		return fmt.Errorf("[uplink] cannot be added or removed while the instance runs: restart it to change it")
	case ou != nil && *ou != *nu:
		for _, k := range []struct {
			key  string
			same bool
		}{
			{"address", ou.Address == nu.Address}, {"host_address", ou.HostAddress == nu.HostAddress},
			{"address6", ou.Address6 == nu.Address6}, {"host_address6", ou.HostAddress6 == nu.HostAddress6},
			{"netns", ou.Netns == nu.Netns}, {"routes", ou.Routes == nu.Routes}, {"userland_proxy", ou.UserlandProxy == nu.UserlandProxy},
		} {
			if !k.same {
				return fmt.Errorf("uplink.%s cannot change while the instance runs: restart it to change it", k.key)
			}
		}
	}
	if !slices.Equal(old.DNS.Upstream, next.DNS.Upstream) {
		return fmt.Errorf("dns.upstream cannot change while the instance runs: restart it to change it")
	}
	return nil
}

// networkFields names what differs between two versions of a network.
func networkFields(a, b Network) []string {
	var out []string
	for _, f := range []struct {
		key  string
		same bool
	}{
		{"subnet", a.Subnet == b.Subnet}, {"gateway", a.Gateway == b.Gateway}, {"mtu", a.MTU == b.MTU},
		{"subnet6", a.Subnet6 == b.Subnet6}, {"gateway6", a.Gateway6 == b.Gateway6},
		{"masquerade", a.Masquerade == b.Masquerade}, {"masquerade6", a.Masquerade6 == b.Masquerade6},
		{"internal", a.Internal == b.Internal},
		{"isolate", a.Isolate == b.Isolate}, {"dns", a.DNS == b.DNS},
	} {
		if !f.same {
			out = append(out, f.key)
		}
	}
	return out
}

// EndpointChanges names what differs between two versions of an endpoint
// that makes it be recreated (none: it can stay as it is).
func EndpointChanges(a, b Endpoint) []string { return endpointFields(a, b, nil) }

// endpointFields names what differs between two versions of an endpoint
// that makes it be recreated: its namespace, link, mode, networks,
// addresses or MACs, or a network of it that is recreated.
func endpointFields(a, b Endpoint, recreateNet map[string]bool) []string {
	var out []string
	for _, f := range []struct {
		key  string
		same bool
	}{
		{"mode", a.Mode == b.Mode && a.Container == b.Container}, {"netns", a.Netns == b.Netns && a.NetnsPath == b.NetnsPath},
		{"link", a.Link == b.Link},
		{"networks", slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y Interface) bool { return x.Network == y.Network && x.Name == y.Name })},
		{"ip", slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y Interface) bool { return x.Prefix == y.Prefix })},
		{"ip6", slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y Interface) bool { return x.Prefix6 == y.Prefix6 })},
		{"mac", slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y Interface) bool { return x.MAC == y.MAC })},
	} {
		if !f.same {
			out = append(out, f.key)
		}
	}
	for _, ifc := range a.Interfaces {
		if recreateNet[ifc.Network] && !slices.Contains(out, "network "+ifc.Network) {
			out = append(out, "network "+ifc.Network)
		}
	}
	return out
}
