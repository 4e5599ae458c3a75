package router

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/ndp"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// IPv6 on the router: a port with an IPv6 address (PortConfig.Addr6)
// answers neighbour discovery for it and for its link-local address
// (package ndp), forwards between its subnet and the others with the hop
// limit decremented, never fragments what it forwards whole (a packet
// larger than the egress MTU is answered with packet too big, RFC 8200 5),
// and answers with the ICMPv6 errors of RFC 4443, rate limited with the
// IPv4 ones. The hooks are conntrack's, at the same points as for IPv4.
// Fragments are reassembled before them (package defrag, as Linux's
// nf_defrag_ipv6) and the datagram, tracked and translated whole, leaves
// fragmented again no larger than its largest fragment was.

// port6 is what a router port has of IPv6.
type port6 struct {
	ip6     [16]byte
	ll128   addr128 // the port's link-local address
	subnet6 netip.Prefix
	nd      *ndp.Cache // nil: the port has no IPv6 address
}

// layout6 is what a layout has of IPv6.
type layout6 struct {
	routes6 table6
	addrs6  []addr128 // the router's IPv6 addresses (not the link-local ones)
}

func (l layout6) clone() layout6 {
	return layout6{routes6: table6{routes: slices.Clone(l.routes6.routes)}, addrs6: slices.Clone(l.addrs6)}
}

// init6 gives p (being attached) its IPv6 address and neighbour cache,
// when its config has one; the caller adds it to the layout with add6.
func (p *Port) init6() {
	if !p.Addr6.IsValid() {
		return
	}
	p.ip6, p.subnet6 = p.Addr6.Addr().As16(), p.Addr6.Masked()
	p.ll128 = bits128(p.MAC.LinkLocal6())
	p.nd = ndp.New(p.ARP, p.MAC, p.ip6, p.r.clock, neigh.Link{Wire: p.link, Release: p.release, Unreachable: p.unreachable})
}

// add6 adds p's IPv6 address and connected route to l.
func (p *Port) add6(l *layout) {
	if p.nd != nil {
		l.addrs6 = append(l.addrs6, bits128(p.ip6))
		l.routes6.add(route6{prefix: p.subnet6, port: p})
	}
}

// remove6 removes what add6 added, and every IPv6 route through p.
func (p *Port) remove6(l *layout) {
	if i := slices.Index(l.addrs6, bits128(p.ip6)); i >= 0 && p.nd != nil {
		l.addrs6 = slices.Delete(l.addrs6, i, i+1)
	}
	l.routes6.routes = slices.DeleteFunc(l.routes6.routes, func(rt route6) bool { return rt.port == p })
}

// Neighbours6 returns the port's IPv6 neighbour cache, nil when the port
// has no IPv6 address.
func (p *Port) Neighbours6() *ndp.Cache { return p.nd }

// NeighbourEntries returns the port's neighbours as `uswitch neigh` lists
// them: its ARP cache, then its IPv6 one.
func (p *Port) NeighbourEntries() []neigh.Entry {
	e := p.arp.Entries()
	if p.nd != nil {
		e = append(e, p.nd.Entries()...)
	}
	return e
}

// addRoute6 adds an IPv6 route (AddRoute with an IPv6 prefix).
func (r *Router) addRoute6(prefix netip.Prefix, p *Port, gw netip.Addr) {
	rt := route6{prefix: prefix.Masked(), port: p}
	if gw.IsValid() {
		rt.gw, rt.hasGW = gw.As16(), true
	}
	r.change(func(l *layout) { l.routes6.add(rt) })
}

// input6 takes an IPv6 frame that arrived on p: neighbour discovery for
// the port's cache, unicast to the port's MAC to be routed; the rest
// (other multicast, what floods past) is not the router's.
func (p *Port) input6(frame []byte, off packet.Offload, rec *trace.Recorder) {
	eth := packet.Ethernet(frame)
	if p.nd == nil {
		if rec != nil {
			rec.Dropped("router/"+p.Name, "none", "IPv6 on a port without an IPv6 address: not routed, not counted")
		}
		return
	}
	ip := packet.IPv6(eth.Payload())
	if !ip.LenValid() {
		p.drop(stats.BadIPHeader, rec)
		return
	}
	ip = ip[:packet.IPv6HeaderLen+int(ip.PayloadLen())] // drop Ethernet padding
	frame = frame[:packet.EthernetHeaderLen+len(ip)]
	unicast := eth.Dst() == p.MAC
	if ip.NextHeader() == packet.ProtoICMPv6 && len(ip) > packet.IPv6HeaderLen {
		if t := ip[packet.IPv6HeaderLen]; t == packet.ICMPv6NeighSolicit || t == packet.ICMPv6NeighAdvert {
			if !p.act(rec, trace.Local, "neighbour discovery: to the router's neighbour cache and responder") {
				return
			}
			if reason, ok := p.nd.Input(ip, packet.NDP(ip[packet.IPv6HeaderLen:]), eth.Src()); !ok {
				p.stats.Drop(reason)
			}
			return
		}
	}
	if !unicast {
		if rec != nil {
			rec.Dropped("router/"+p.Name, "none", "multicast IPv6: not routed, not counted")
		}
		return
	}
	if packet.IsIPv6Ext(ip.NextHeader()) {
		// a fragment (not an atomic one) is reassembled first
		if fh, ok := ip.Fragment(); ok && (fh.Offset() != 0 || fh.More()) {
			if p.act(rec, trace.Queued, "a fragment: held for reassembly, then routed whole") {
				p.reassemble6(frame)
			}
			return
		}
	}
	p.route6(frame, off, rec, 0)
}

// route6 takes an IPv6 frame whose header is valid through the hooks to
// the router's own address or its egress port, as route does for IPv4.
// fragMax is, for a datagram reassembled from fragments, the largest
// fragment's length: it leaves as fragments that large again (packet too
// big when the egress MTU is smaller); 0 for any other packet.
//
// route6 is kept a twin of route, the same hooks in the same order: what
// they share is in helpers (local, deny, sendVia), and what is left is
// each family's own on the hottest path (martian checks on the header's
// words, the table lookup, TTL or hop limit, the MTU check, the errors).
// One function over a type parameter would reach those through the
// dictionary of one GC shape (packet.IPv4 and packet.IPv6 are both
// []byte): an indirect call a step, a frame, on a path tuned to the
// nanosecond (see docs/architecture.md, make bench).
func (p *Port) route6(frame []byte, off packet.Offload, rec *trace.Recorder, fragMax int) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	// the addresses as words straight from the header: no 16-byte copies
	// on the stack to compare, mask and reload
	s, d := srcBits(ip), dstBits(ip)
	if s.martian() || s.multicast() || d.martian() {
		p.drop(stats.Martian, rec)
		return
	}
	r := p.r
	fl := nat.Flow{Partial: off.NeedsCsum(), Rec: rec}
	if v := r.ct.Prerouting6(&fl, ip, p.iface); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	d0 := d
	d = dstBits(ip)
	if r.isLocalBits(d) || d == p.ll128 {
		r.local(p, &fl, frame, off, rec)
		return
	}
	if d.linkLocal() || s.linkLocal() {
		// Link-local addresses are never forwarded (RFC 4291 2.5.6); a
		// source beyond its scope is answered as Linux does.
		if d.linkLocal() {
			p.drop(stats.NotForwarded, rec)
			return
		}
		p.refuse6(stats.NotForwarded, rec, frame, off, packet.ICMPv6DstUnreach, 2 /* beyond scope of source */, 0)
		return
	}
	rt := r.lay.Load().routes6.match(d)
	if rt == nil {
		p.refuse6(stats.NoRoute, rec, frame, off, packet.ICMPv6DstUnreach, packet.ICMPv6CodeNoRoute, 0)
		return
	}
	out := rt.port
	if rec != nil {
		rec.Addf(trace.Route, "router", "%v via %s, next hop %v", netip.AddrFrom16(ip.Dst()), out.Name, netip.AddrFrom16(rt.nextHop(ip)))
	}
	bridged := out == p && d != d0 // a hairpin, as for IPv4
	if ip.HopLimit() <= 1 && !bridged {
		p.refuse6(stats.TTLExceeded, rec, frame, off, packet.ICMPv6TimeExceeded, packet.ICMPv6CodeHopLimit, 0)
		return
	}
	if v := r.ct.Filter(&fl, nat.Forward, out.iface); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	if len(ip) > out.MTU && wireLen6(ip, off, fragMax) > out.MTU {
		p.refuse6(stats.PacketTooBig, rec, frame, off, packet.ICMPv6PacketTooBig, 0, uint32(out.MTU))
		return
	}
	if v := r.ct.Postrouting6(&fl, ip, out.iface, out.ip6); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	if !bridged {
		ip.SetHopLimit(ip.HopLimit() - 1)
	}
	if fragMax > 0 {
		r.fragment6(out, rt.nextHop(ip), frame, fragMax, rec)
		return
	}
	sendVia(out, out.nd.Cache, rt.nextHop(ip), frame, off, rec)
}

// refuse6 counts a packet dropped on p for reason and answers it with an
// ICMPv6 error of type typ and code (rest: its second word), as
// icmpError6 allows.
func (p *Port) refuse6(reason stats.Reason, rec *trace.Recorder, frame []byte, off packet.Offload, typ, code uint8, rest uint32) {
	p.drop(reason, rec)
	if act(rec, trace.Send, "router", "answers with an ICMPv6 error") {
		p.r.icmpError6(frame, off, typ, code, rest)
	}
}

// wireLen6 is the length of the largest packet frame's IPv6 packet ip
// stands for on a wire: its own, for a super-frame its first segment's,
// for a reassembled datagram its largest fragment's (fragMax).
func wireLen6(ip packet.IPv6, off packet.Offload, fragMax int) int {
	if fragMax > 0 {
		return fragMax
	}
	if !off.IsGSO() {
		return len(ip)
	}
	hdr := packet.IPv6HeaderLen + packet.UDPHeaderLen
	if proto, l4, ok := ip.Upper(); ok && proto == packet.ProtoTCP {
		if t := packet.TCP(ip[l4:]); t.Valid() {
			hdr = l4 + t.HeaderLen()
		}
	}
	return min(len(ip), hdr+int(off.GSOSize))
}

func (r *Router) isLocal6(ip [16]byte) bool { return r.isLocalBits(bits128(ip)) }

func (r *Router) isLocalBits(a addr128) bool {
	for _, b := range r.lay.Load().addrs6 {
		if a == b {
			return true
		}
	}
	return false
}

// addr128 is an IPv6 address as two words, compared without a call.
type addr128 struct{ hi, lo uint64 }

func bits128(a [16]byte) addr128 {
	hi, lo := packet.AddrBits6(a)
	return addr128{hi, lo}
}

// srcBits and dstBits are a packet's addresses as addr128.
func srcBits(ip packet.IPv6) addr128 {
	hi, lo := ip.SrcWords()
	return addr128{hi, lo}
}

func dstBits(ip packet.IPv6) addr128 {
	hi, lo := ip.DstWords()
	return addr128{hi, lo}
}

// martian reports an address no router forwards from or to: the
// unspecified address, loopback, and IPv4-mapped addresses (RFC 4291).
func (a addr128) martian() bool {
	return a.hi == 0 && (a.lo <= 1 || a.lo>>32 == 0xffff)
}

func (a addr128) multicast() bool { return a.hi>>56 == 0xff }

func (a addr128) linkLocal() bool { return a.hi>>54 == 0xfe80>>6 }

// martian6 is addr128.martian for an address.
func martian6(a [16]byte) bool { return bits128(a).martian() }

// icmp6QuoteMax bounds an ICMPv6 error to the minimum MTU (RFC 4443 2.4(c)).
const icmp6QuoteMax = packet.IPv6MinMTU - packet.IPv6HeaderLen - packet.ICMPHeaderLen

// icmpError6 answers the packet in frame with an ICMPv6 error, unless RFC
// 4443 2.4(e) forbids it (an error about an error, a packet to a multicast
// address but for packet too big, a source that is not one host, or is the
// router's own) or the
// rate limit says no (packet too big is not limited, as Linux's
// icmpv6 ratemask leaves it out). rest is the error's second word: the
// MTU of packet too big. The error about a super-frame quotes its first
// segment.
func (r *Router) icmpError6(frame []byte, off packet.Offload, typ, code uint8, rest uint32) {
	if !off.Plain() {
		r.segment(frame, off, func(f []byte) bool {
			r.icmpError6(f, packet.Offload{}, typ, code, rest)
			return false
		})
		return
	}
	orig := packet.IPv6(frame[packet.EthernetHeaderLen:])
	src := orig.Src()
	if martian6(src) || packet.IsMulticast6(src) || packet.IsMulticast6(orig.Dst()) && typ != packet.ICMPv6PacketTooBig {
		return
	}
	if r.isLocal6(src) {
		// A packet the router sent itself (or one whose translation
		// conntrack no longer knows): nobody to tell.
		return
	}
	if proto, l4, ok := orig.Upper(); !ok || proto == packet.ProtoICMPv6 && (!packet.ICMPv6(orig[l4:]).Valid() || packet.ICMPv6(orig[l4:]).IsError()) {
		return
	}
	if typ != packet.ICMPv6PacketTooBig && !r.limit.allowKey(src) {
		return
	}
	_, from, ok := r.output6(src)
	if !ok {
		return
	}
	if dst := orig.Dst(); r.isLocal6(dst) {
		from = dst // about a packet to the router: from the address it went to, as Linux's icmp6_send
	}
	quote := min(len(orig), icmp6QuoteMax)
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	n := packet.EthernetHeaderLen + packet.IPv6HeaderLen + packet.ICMPHeaderLen + quote
	f := (*bp)[:n]
	ip := packet.IPv6(f[packet.EthernetHeaderLen:])
	ip.Encode(&packet.IPv6Fields{PayloadLen: uint16(packet.ICMPHeaderLen + quote), NextHeader: packet.ProtoICMPv6, HopLimit: generatedTTL, Src: from, Dst: src})
	m := packet.ICMPv6(ip[packet.IPv6HeaderLen:])
	m.Encode(&packet.ICMPFields{Type: typ, Code: code, Rest: rest})
	copy(m[packet.ICMPHeaderLen:], orig[:quote])
	m.SetChecksum(from, src)
	r.send6(f)
}

// output6 is the port a packet the router sends to dst leaves by, and the
// source address it has there: the port's link-local address for a
// link-local dst (on the port whose cache knows dst), else its global one.
func (r *Router) output6(dst [16]byte) (*Port, [16]byte, bool) {
	if packet.IsLinkLocal6(dst) {
		for _, p := range r.lay.Load().ports {
			if p.nd != nil {
				if _, _, ok := p.nd.Peek(dst); ok {
					return p, p.nd.LinkLocal(), true
				}
			}
		}
		return nil, [16]byte{}, false
	}
	out, _, ok := r.lay.Load().routes6.lookup(dst)
	if !ok {
		return nil, [16]byte{}, false
	}
	return out, out.ip6, true
}

// send6 routes an IPv6 packet the router originates (Originate, ICMPv6
// errors) through the output hook.
func (r *Router) send6(frame []byte) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	dst := ip.Dst()
	out, _, ok := r.output6(dst)
	if !ok || r.ct.Output6(ip, out.iface).Action != nat.Accept {
		return
	}
	nh := dst
	if !packet.IsLinkLocal6(dst) {
		_, nh, _ = r.lay.Load().routes6.lookup(dst)
	}
	packet.Ethernet(frame).SetEtherType(packet.EtherTypeIPv6)
	if len(frame)-packet.EthernetHeaderLen > out.MTU {
		// what the router sends itself it fragments, as a host (RFC 8200 5)
		r.fragment6(out, nh, frame, out.MTU, nil)
		return
	}
	sendVia(out, out.nd.Cache, nh, frame, packet.Offload{}, nil)
}

type route6 struct {
	prefix         netip.Prefix
	port           *Port
	gw             [16]byte
	hasGW          bool
	hi, lo         uint64 // the prefix, masked
	maskHi, maskLo uint64
}

// table6 is the IPv6 routing table: longest prefix first, searched
// linearly without allocation, as table is for IPv4.
type table6 struct{ routes []route6 }

func (t *table6) add(r route6) {
	bits := r.prefix.Bits()
	r.maskHi, r.maskLo = ^uint64(0)<<max(0, 64-bits), ^uint64(0)<<max(0, 128-bits)
	if bits == 0 {
		r.maskHi = 0
	}
	if bits <= 64 {
		r.maskLo = 0
	}
	hi, lo := packet.AddrBits6(r.prefix.Addr().As16())
	r.hi, r.lo = hi&r.maskHi, lo&r.maskLo
	t.routes = append(t.routes, r)
	sort.SliceStable(t.routes, func(i, j int) bool { return t.routes[i].prefix.Bits() > t.routes[j].prefix.Bits() })
}

// lookup returns the egress port and next hop for dst.
func (t *table6) lookup(dst [16]byte) (*Port, [16]byte, bool) {
	r := t.match(bits128(dst))
	if r == nil {
		return nil, [16]byte{}, false
	}
	if r.hasGW {
		return r.port, r.gw, true
	}
	return r.port, dst, true
}

// match returns the route to d (longest prefix), or nil.
func (t *table6) match(d addr128) *route6 {
	for i := range t.routes {
		if r := &t.routes[i]; d.hi&r.maskHi == r.hi && d.lo&r.maskLo == r.lo {
			return r
		}
	}
	return nil
}

// nextHop is where r sends packet ip: its gateway, or ip's destination
// on a connected prefix.
func (r *route6) nextHop(ip packet.IPv6) [16]byte {
	if r.hasGW {
		return r.gw
	}
	return ip.Dst()
}

// routes6 appends the IPv6 table's rows to out (Routes).
func (t *table6) rows(out []Route) []Route {
	for _, rt := range t.routes {
		row := Route{Prefix: rt.prefix, Port: rt.port.Name, Network: rt.port.Network, Scope: "link", Src: netip.AddrFrom16(rt.port.ip6)}
		if rt.hasGW {
			row.Via = netip.AddrFrom16(rt.gw).String()
			row.Scope = "global"
		}
		out = append(out, row)
	}
	return out
}
