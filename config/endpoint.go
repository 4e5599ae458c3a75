package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

// epState is an endpoint during resolution.
type epState struct {
	*Endpoint
	s      scope
	target string // of mode container:<target>
	ifaces []ifState
}

// ifState is an interface during resolution.
type ifState struct {
	*Interface
	s     scope
	net   *netState // nil when the network is unknown or invalid
	owner string    // `endpoint "api" eth1`, for the messages of others
	mac   bool      // the MAC was given
}

var (
	endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// validNetns reports whether name is safe as an `ip netns` name.
func validNetns(name string) bool {
	return endpointName.MatchString(name) && len(name) <= 64
}

// endpoints checks and resolves the [[endpoint]] tables: modes, interfaces,
// addresses, MACs, aliases and published ports.
func (p *parser) endpoints(raws []rawEndpoint, d Defaults) []Endpoint {
	eps := make([]Endpoint, len(raws))
	states := make([]*epState, len(raws))
	p.eps = map[string]*epState{}
	for i := range raws {
		states[i] = p.endpoint(i, &raws[i], &eps[i], d)
	}
	for _, e := range states {
		p.container(e)
	}
	p.checkNetns(states)
	assignIPs(states)
	assignMACs(p.netList, states)
	checkAliases(p.netList, states)
	publishPorts(states, d.PublishRange)
	return eps
}

// endpoint checks one [[endpoint]] on its own.
func (p *parser) endpoint(i int, r *rawEndpoint, e *Endpoint, d Defaults) *epState {
	table := fmt.Sprintf("endpoint[%d]", i)
	s := p.scope(table, fmt.Sprintf("endpoint #%d", i+1))
	name, named := s.required("name", r.Name)
	attach := p.attachment(s, r)
	if named {
		s = p.scope(table, fmt.Sprintf("endpoint %q", name))
		switch {
		case attach && attachmentName.MatchString(name):
		case !validNetns(name):
			s.errorf("name", "name must be 1-64 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit")
		case name == rule.Uplink || name == "gw":
			s.errorf("name", "name %q is reserved for the router's ports", name)
		}
	}
	*e = Endpoint{
		Name:         name,
		Mode:         ModeBridge,
		Netns:        name,
		PortSecurity: s.boolean("port_security", r.PortSecurity, d.PortSecurity),
	}
	es := &epState{Endpoint: e, s: s}
	if first, dup := p.eps[name]; dup {
		s.errorf("name", "duplicate name, first defined at line %d", p.loc.line(first.s.table, "name"))
	} else if named {
		p.eps[name] = es
	}

	mode, _ := s.str("mode", r.Mode)
	switch {
	case mode == "" || mode == ModeBridge:
	case mode == ModeNone || mode == ModeHost:
		e.Mode = mode
	case strings.HasPrefix(mode, ModeContainer+":"):
		e.Mode, es.target = ModeContainer, strings.TrimPrefix(mode, ModeContainer+":")
	default:
		s.errorf("mode", "mode %q is not bridge, none, host or container:<endpoint>", mode)
	}
	bridge := e.Mode == ModeBridge
	if e.Mode == ModeHost {
		e.Netns = ""
	}

	switch link, given := s.str("link", r.Link); {
	case given && !bridge:
		s.errorf("link", "link only applies to mode %q", ModeBridge)
	case !bridge:
	case !given:
		e.Link = LinkTAP
	case link == LinkTAP || link == LinkVeth:
		e.Link = link
	default:
		s.errorf("link", "link %q is not tap or veth", link)
	}

	switch netns, given := s.str("netns", r.Netns); {
	case !given:
	case e.Mode == ModeHost || e.Mode == ModeContainer:
		s.errorf("netns", "netns does not apply to mode %q", mode)
	case !validNetns(netns):
		s.errorf("netns", "netns %q is not a valid namespace name", netns)
	default:
		e.Netns = netns
	}

	if r.Aliases != nil && !bridge {
		s.errorf("aliases", "aliases need mode %q", ModeBridge)
	} else {
		for _, al := range s.strings("aliases", r.Aliases) {
			switch {
			case !dnsLabel.MatchString(al):
				s.errorf("aliases", "alias %q is not a DNS label (a-z, 0-9 and '-', at most 63)", al)
			case slices.Contains(e.Aliases, al):
				s.errorf("aliases", "alias %q is listed twice", al)
			default:
				e.Aliases = append(e.Aliases, al)
			}
		}
	}

	if r.Publish != nil && !bridge {
		s.errorf("publish", "publish needs mode %q", ModeBridge)
	} else {
		e.Publish = publishSpecs(s, r.Publish)
	}

	if attach {
		p.attachTo(es, r)
	}
	es.ifaces = p.interfaces(es, r)
	if attach && len(es.Interfaces) == 1 {
		if ifname, ok := s.str("ifname", r.Ifname); ok {
			es.Interfaces[0].Name = ifname
		}
	} else if attach && len(es.Interfaces) > 1 {
		s.errorf("interface", "an attachment has one interface")
	}
	return es
}

// attachment reports whether r is an attachment (it has netns_path); its
// keys are unknown outside ParseLive.
func (p *parser) attachment(s scope, r *rawEndpoint) bool {
	if p.attach {
		return r.NetnsPath != nil
	}
	for _, k := range []struct {
		key string
		v   any
	}{{"netns_path", r.NetnsPath}, {"ifname", r.Ifname}, {"container_id", r.ContainerID}} {
		if k.v != nil {
			s.errorf(k.key, "unknown key %q", k.key)
		}
	}
	return false
}

var (
	ifnameRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	containerID = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// attachTo checks an attachment's own keys: a namespace path of the
// caller's, the interface name inside it and the container ID.
func (p *parser) attachTo(es *epState, r *rawEndpoint) {
	s := es.s
	if es.Mode != ModeBridge {
		s.errorf("mode", "an attachment is in mode %q", ModeBridge)
	}
	if path, ok := s.str("netns_path", r.NetnsPath); ok {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "\x00\n") || len(path) > 4096 {
			s.errorf("netns_path", "netns_path %q is not an absolute path", path)
		}
		es.NetnsPath, es.Netns = path, ""
	}
	if ifname, ok := s.str("ifname", r.Ifname); ok && (!ifnameRe.MatchString(ifname) || ifname == "lo") {
		s.errorf("ifname", "ifname %q is not a valid interface name (1-15 of A-Z, a-z, 0-9, '_', '.', '-')", ifname)
	}
	if id, ok := s.str("container_id", r.ContainerID); ok {
		if !containerID.MatchString(id) {
			s.errorf("container_id", "container_id %q may hold only A-Z, a-z, 0-9, '_', '.' and '-'", id)
		}
		es.ContainerID = id
	}
}

// interfaces checks an endpoint's interfaces: the shorthand network/ip/mac
// keys, or [[endpoint.interface]] tables.
func (p *parser) interfaces(es *epState, r *rawEndpoint) []ifState {
	type spec struct {
		s scope
		r rawInterface
	}
	var specs []spec
	short := r.Network != nil || r.IP != nil || r.IP6 != nil || r.MAC != nil
	if short {
		specs = append(specs, spec{es.s, rawInterface{r.Network, r.IP, r.IP6, r.MAC}})
	}
	for j, ri := range r.Interface {
		table := fmt.Sprintf("%s.interface[%d]", es.s.table, j)
		specs = append(specs, spec{p.scope(table, fmt.Sprintf("%s eth%d", es.s.what, j)), ri})
	}
	switch {
	case short && len(r.Interface) > 0:
		es.s.errorf("interface", "give either network/ip/mac or [[endpoint.interface]] tables, not both")
		return nil
	case len(specs) > 0 && es.Mode != ModeBridge:
		key := "interface"
		if short {
			key = "network"
		}
		es.s.errorf(key, "networks need mode %q", ModeBridge)
		return nil
	case len(specs) == 0 && es.Mode == ModeBridge:
		es.s.errorf("", `mode "bridge" needs a network: set network = "..." or add [[endpoint.interface]] tables`)
		return nil
	case len(specs) == 0:
		return nil
	}

	es.Interfaces = make([]Interface, len(specs))
	ifaces := make([]ifState, len(specs))
	for j, sp := range specs {
		ifc := &es.Interfaces[j]
		*ifc = Interface{Name: fmt.Sprintf("eth%d", j), Port: es.Name}
		f := ifState{Interface: ifc, s: sp.s, owner: fmt.Sprintf("endpoint %q", es.Name)}
		if j > 0 {
			ifc.Port += "/" + ifc.Name
			f.owner += " " + ifc.Name
		}
		if name, ok := sp.s.required("network", sp.r.Network); ok {
			ifc.Network = name
			n, exists := p.nets[name]
			prev := slices.IndexFunc(es.Interfaces[:j], func(o Interface) bool { return o.Network == name })
			switch {
			case !exists:
				sp.s.errorf("network", "network %q does not exist", name)
			case prev >= 0:
				sp.s.errorf("network", "already on network %q (eth%d)", name, prev)
			case n.valid:
				f.net, ifc.Gateway, ifc.MTU = n, n.Gateway, n.MTU
				ifc.Gateway6 = n.Gateway6
			}
		}
		if v, ok := sp.s.str("ip6", sp.r.IP6); ok {
			switch ip, err := netip.ParseAddr(v); {
			case err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "":
				sp.s.errorf("ip6", "ip6 %q is not an IPv6 address", v)
			case f.net != nil && !f.net.Subnet6.IsValid():
				sp.s.errorf("ip6", "ip6 %s: network %q has no subnet6", ip, f.net.Name)
			default:
				ifc.IP6 = ip
			}
		}
		if v, ok := sp.s.str("ip", sp.r.IP); ok {
			if ip, err := netip.ParseAddr(v); err != nil || !ip.Is4() {
				sp.s.errorf("ip", "ip %q is not an IPv4 address", v)
			} else {
				ifc.IP = ip
			}
		}
		if v, ok := sp.s.str("mac", sp.r.MAC); ok {
			switch mac, err := packet.ParseMAC(v); {
			case err != nil:
				sp.s.errorf("mac", "mac %q is not a MAC address like 02:42:ac:14:00:0a", v)
			case mac.IsZero():
				sp.s.errorf("mac", "mac %s is the zero address", mac)
			case mac.IsMulticast():
				sp.s.errorf("mac", "mac %s is a multicast address: its first byte must be even", mac)
			default:
				ifc.MAC, f.mac = mac, true
			}
		}
		ifaces[j] = f
	}
	return ifaces
}

// container resolves mode container:<target>.
func (p *parser) container(e *epState) {
	if e.Mode != ModeContainer {
		return
	}
	mode := ModeContainer + ":" + e.target
	t, exists := p.eps[e.target]
	switch {
	case !exists:
		e.s.errorf("mode", "mode %q: endpoint %q does not exist", mode, e.target)
	case t == e:
		e.s.errorf("mode", "mode %q: an endpoint cannot share its own namespace", mode)
	case t.Mode == ModeContainer:
		e.s.errorf("mode", "mode %q: endpoint %q is itself in container mode; name %q, whose namespace it shares", mode, t.Name, t.target)
	case t.Mode == ModeHost:
		e.s.errorf("mode", "mode %q: endpoint %q is in host mode and has no namespace to share", mode, t.Name)
	case t.NetnsPath != "":
		e.s.errorf("mode", "mode %q: endpoint %q is an attachment in a namespace uswitch does not own", mode, t.Name)
	default:
		e.Container, e.Netns = t.Name, t.Netns
	}
}

// checkNetns rejects two endpoints that would own the same namespace.
func (p *parser) checkNetns(eps []*epState) {
	owner := map[string]string{}
	for _, e := range eps {
		if e.Mode == ModeHost || e.Mode == ModeContainer || e.NetnsPath != "" || p.eps[e.Name] != e {
			continue // no namespace of its own, or a duplicate name (reported)
		}
		if o, taken := owner[e.Netns]; taken {
			e.s.errorf("netns", "netns %q is already the namespace of endpoint %q (mode = \"container:%s\" shares it)", e.Netns, o, o)
			continue
		}
		owner[e.Netns] = e.Name
	}
}

// assignIPs claims the given addresses, then gives the others the lowest
// free one of their network, in file order.
func assignIPs(eps []*epState) {
	for _, six := range []bool{false, true} {
		for _, e := range eps {
			for _, f := range e.ifaces {
				if ip := f.given(six); f.net != nil && ip.IsValid() {
					claim(f, ip)
				}
			}
		}
	}
	for _, e := range eps {
		for _, f := range e.ifaces {
			if f.net != nil && !f.IP.IsValid() {
				freeIP(f)
			}
			if f.net != nil && f.net.Subnet6.IsValid() && !f.IP6.IsValid() {
				freeIP6(f)
			}
		}
	}
}

// freeIP6 gives f the lowest free address of its network's subnet6; a /64
// does not run out in any file.
func freeIP6(f ifState) {
	n := f.net
	for a := n.next6; n.Subnet6.Contains(a); a = a.Next() {
		if a != n.Gateway6 && n.taken[a] == "" {
			n.taken[a], n.next6 = f.owner, a.Next()
			f.IP6, f.Prefix6 = a, netip.PrefixFrom(a, n.Subnet6.Bits())
			return
		}
	}
	f.s.errorf("network", "network %q (%s) is full: no free IPv6 address left", n.Name, n.Subnet6)
}

// given is the address f was given in its IPv4 (ip) or IPv6 (ip6) key.
func (f ifState) given(six bool) netip.Addr {
	if six {
		return f.IP6
	}
	return f.IP
}

// claim takes ip, the IPv4 or IPv6 address given to f, in f's network:
// inside the subnet of its family, not one of that subnet's reserved
// addresses (hostAddress), not the gateway, not taken by another.
func claim(f ifState, ip netip.Addr) {
	n := f.net
	key, subnet, gw, gwKey, prefix := "ip", n.Subnet, n.Gateway, "gateway", &f.Prefix
	if ip.Is6() {
		key, subnet, gw, gwKey, prefix = "ip6", n.Subnet6, n.Gateway6, "gateway6", &f.Prefix6
	}
	switch {
	case !subnet.Contains(ip):
		f.s.errorf(key, "%s %s is outside network %q (%s)", key, ip, n.Name, subnet)
	case hostAddress(ip, subnet) != "":
		f.s.errorf(key, "%s %s is %s of network %q (%s)", key, ip, hostAddress(ip, subnet), n.Name, subnet)
	case ip == gw:
		f.s.errorf(key, "%s %s is the %s of network %q", key, ip, gwKey, n.Name)
	case n.taken[ip] != "":
		f.s.errorf(key, "%s %s is already taken by %s", key, ip, n.taken[ip])
	default:
		n.taken[ip] = f.owner
		*prefix = netip.PrefixFrom(ip, subnet.Bits())
	}
}

func freeIP(f ifState) {
	n := f.net
	for a := n.next; n.Subnet.Contains(a) && a != broadcast(n.Subnet); a = a.Next() {
		if a != n.Gateway && n.taken[a] == "" {
			n.taken[a], n.next = f.owner, a.Next()
			f.IP, f.Prefix = a, netip.PrefixFrom(a, n.Subnet.Bits())
			return
		}
	}
	f.s.errorf("network", "network %q (%s) is full: no free address left", n.Name, n.Subnet)
}

// assignMACs derives the MACs not given and rejects duplicates, gateways'
// included.
func assignMACs(nets []*netState, eps []*epState) {
	owner := map[packet.MAC]string{}
	for _, n := range nets {
		if n.valid {
			owner[n.GatewayMAC] = fmt.Sprintf("the gateway of network %q", n.Name)
		}
	}
	for _, e := range eps {
		for _, f := range e.ifaces {
			if !f.mac {
				if !f.Prefix.IsValid() {
					continue // no address: reported
				}
				f.MAC = derivedMAC(f.IP)
			}
			if o, taken := owner[f.MAC]; taken {
				if f.mac {
					f.s.errorf("mac", "mac %s is already used by %s", f.MAC, o)
				} else {
					f.s.errorf("mac", "mac %s (derived from ip %s) is already used by %s: set mac", f.MAC, f.IP, o)
				}
				continue
			}
			owner[f.MAC] = f.owner
		}
	}
}

// checkAliases rejects an alias that another name on a shared network
// already answers for.
func checkAliases(nets []*netState, eps []*epState) {
	reported := map[[2]string]bool{}
	for _, n := range nets {
		var members []*epState
		owner := map[string]string{}
		for _, e := range eps {
			if slices.ContainsFunc(e.ifaces, func(f ifState) bool { return f.net == n }) {
				members = append(members, e)
				owner[e.Name] = fmt.Sprintf("the name of endpoint %q", e.Name)
			}
		}
		for _, e := range members {
			for _, al := range e.Aliases {
				o, taken := owner[al]
				if !taken {
					owner[al] = fmt.Sprintf("an alias of endpoint %q", e.Name)
				} else if k := [2]string{e.Name, al}; !reported[k] {
					reported[k] = true
					e.s.errorf("aliases", "alias %q is already %s on network %q", al, o, n.Name)
				}
			}
		}
	}
}

// publishSpecs parses the publish list.
func publishSpecs(s scope, v any) []Publish {
	var pubs []Publish
	for _, el := range s.list("publish", v) {
		var spec string
		switch el := el.(type) {
		case string:
			spec = el
		case int64:
			spec = strconv.FormatInt(el, 10)
		default:
			s.errorf("publish", "publish must hold strings like \"8080:80/tcp\", not %s", typeName(el))
			continue
		}
		pub, err := parsePublish(spec)
		if err != nil {
			s.errorf("publish", "publish %q: %v", spec, err)
			continue
		}
		pubs = append(pubs, pub)
	}
	return pubs
}

// parsePublish parses "host:container/proto", "container/proto",
// "host:container" or "container".
func parsePublish(spec string) (Publish, error) {
	pub := Publish{Proto: "tcp"}
	ports, proto, hasProto := strings.Cut(spec, "/")
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return pub, fmt.Errorf("protocol %q is not tcp or udp", proto)
		}
		pub.Proto = proto
	}
	host, ctr, hasHost := strings.Cut(ports, ":")
	if !hasHost {
		host, ctr, pub.Random = "", host, true
	}
	var err error
	if pub.ContainerPort, err = parsePort(ctr); err != nil {
		return pub, fmt.Errorf("container %w", err)
	}
	if hasHost {
		if pub.HostPort, err = parsePort(host); err != nil {
			return pub, fmt.Errorf("host %w", err)
		}
	}
	return pub, nil
}

// publishPorts rejects a host port published twice and picks the host ports
// not given: the lowest of the range that no other publish uses, in file
// order.
func publishPorts(eps []*epState, rng [2]uint16) {
	type hostPort struct {
		port  uint16
		proto string
	}
	owner := map[hostPort]string{}
	for _, e := range eps {
		for _, pub := range e.Publish {
			if pub.Random {
				continue
			}
			k := hostPort{pub.HostPort, pub.Proto}
			if o, taken := owner[k]; taken {
				e.s.errorf("publish", "host port %d/%s is published twice (also by endpoint %q)", pub.HostPort, pub.Proto, o)
				continue
			}
			owner[k] = e.Name
		}
	}
	next := map[string]int{} // proto → where the search resumes
	for _, e := range eps {
		for i := range e.Publish {
			pub := &e.Publish[i]
			if !pub.Random {
				continue
			}
			for port := max(next[pub.Proto], int(rng[0])); port <= int(rng[1]) && pub.HostPort == 0; port++ {
				if k := (hostPort{uint16(port), pub.Proto}); owner[k] == "" {
					owner[k], pub.HostPort = e.Name, uint16(port)
				}
				next[pub.Proto] = port + 1
			}
			if pub.HostPort == 0 {
				e.s.errorf("publish", "no free host port left in publish_range %d-%d for %d/%s", rng[0], rng[1], pub.ContainerPort, pub.Proto)
			}
		}
	}
}
