// Package router owns layer 3: the router ports that hold each network's
// gateway (and the uplink's address), the longest-prefix routing table,
// forwarding with TTL decrement and incremental checksum updates, the policy
// between networks (isolation, internal networks), and the ICMP errors a
// Linux router sends, rate limited like icmp_ratelimit. What is addressed
// to the router's own addresses goes to the host stage (package host).
//
// Fragments are reassembled before conntrack (package defrag), so a
// fragmented datagram is tracked and translated whole, then fragmented
// again: IPv4 to the egress MTU, IPv6 to its largest original fragment.
//
// A frame reaches the router on the goroutine that read it and leaves it,
// rewritten in place, on that same goroutine: a forwarded frame is never
// copied unless it must wait for ARP resolution, be reassembled or be
// fragmented.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package router

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/uswitch-dev/uswitch/arp"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/defrag"
	"github.com/uswitch-dev/uswitch/host"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// PortConfig describes a router port.
type PortConfig struct {
	Name    string       // "gw/<network>" or rule.Uplink
	Network string       // the network's name; "" for the uplink
	MAC     packet.MAC   // the port's MAC
	Addr    netip.Prefix // the port's address and its subnet's length
	Addr6   netip.Prefix // the port's IPv6 address and its subnet's length; none: IPv4 only
	MTU     int
	ARP     arp.Config // the neighbour caches' timers and limits, for ARP and NDP alike
}

// Port is one interface of the router.
type Port struct {
	PortConfig
	ip     [4]byte
	subnet netip.Prefix
	bcast  [4]byte // the subnet's broadcast address (none for /31 and /32)
	iface  string  // what rules call it: the network's name, or rule.Uplink
	// link is where the port's frames go: the router's port on the
	// network's switch (or on the uplink's). The router forwards
	// super-frames and partial checksums as they arrived and sends what
	// it makes itself plain.
	link  packet.Egress
	stats *stats.Port
	arp   *arp.Cache
	in    host.Ingress // the port as the host stage sees it
	r     *Router
	port6
}

// Router is the instance's one router.
type Router struct {
	clock  clock.Clock
	log    *slog.Logger
	ct     *nat.Tracker
	defrag *defrag.Reassembler
	// lay is the ports, addresses and routes, copy-on-write: frames read
	// it without a lock while AddPort, AddRoute and RemovePort (serialized
	// by mu) publish a new one.
	lay   atomic.Pointer[layout]
	mu    sync.Mutex
	limit *rateLimiter
	bufs  sync.Pool
	ipID  uint32 // IP id of generated packets, atomically bumped
	ipID6 uint32 // fragment identification of IPv6 datagrams fragmented again
	host  *host.Stage
}

// SetHost sets the stage that packets to the router's own addresses are
// delivered to (made with host.New(r, ...)). It is set before traffic
// flows; without one, nothing is delivered locally.
func (r *Router) SetHost(h *host.Stage) { r.host = h }

// New returns a router with no ports whose hooks are ct's.
func New(clk clock.Clock, log *slog.Logger, ct *nat.Tracker) *Router {
	r := &Router{clock: clk, log: log, ct: ct, limit: newRateLimiter(clk), defrag: defrag.New(defrag.Config{}, clk)}
	r.lay.Store(&layout{})
	r.bufs.New = func() any { b := make([]byte, maxGenerated); return &b }
	return r
}

// layout is one version of the router's ports, addresses and routes.
type layout struct {
	ports  []*Port
	routes table
	addrs  [][4]byte // every address the router owns
	layout6
}

// change publishes a copy of the layout that fn changed.
func (r *Router) change(fn func(l *layout)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.lay.Load()
	l := &layout{ports: slices.Clone(old.ports), routes: table{routes: slices.Clone(old.routes.routes)}, addrs: slices.Clone(old.addrs), layout6: old.clone()}
	fn(l)
	r.lay.Store(l)
}

// AddPort adds a router port whose frames leave through link and whose
// counters (drops by reason) are st: NewPort, then Attach.
func (r *Router) AddPort(c PortConfig, link packet.Egress, st *stats.Port) (*Port, error) {
	p, err := r.NewPort(c)
	if err != nil {
		return nil, err
	}
	r.Attach(p, link, st)
	return p, nil
}

// NewPort makes the router port c describes, not yet part of the router:
// it can be the device of the switch port that will be its link before
// Attach makes the router route through it. Until then nothing must write
// to it.
func (r *Router) NewPort(c PortConfig) (*Port, error) {
	if !c.Addr.Addr().Is4() {
		return nil, fmt.Errorf("router port %q: address %v is not IPv4", c.Name, c.Addr)
	}
	p := &Port{PortConfig: c, ip: c.Addr.Addr().As4(), subnet: c.Addr.Masked(), r: r}
	if p.subnet.Bits() < 31 {
		p.bcast = broadcastOf(p.subnet)
	}
	p.iface = c.Network
	if c.Network == "" {
		p.iface = rule.Uplink
	}
	return p, nil
}

// Attach makes p, made by NewPort, a port of the router whose frames leave
// through link and whose counters (drops by reason) are st. A connected
// route to the port's subnet comes with it. Ports may be attached while
// frames flow.
func (r *Router) Attach(p *Port, link packet.Egress, st *stats.Port) {
	p.link, p.stats = link, st
	p.in = host.Ingress{Network: p.Network, Addr: p.ip, Stats: st}
	p.arp = arp.New(p.ARP, p.MAC, p.ip, r.clock, arp.Output{Wire: link, Release: p.release, Unreachable: p.unreachable})
	p.init6()
	r.change(func(l *layout) {
		l.ports = append(l.ports, p)
		l.addrs = append(l.addrs, p.ip)
		l.routes.add(route{prefix: p.subnet, port: p})
		p.add6(l)
	})
}

// RemovePort removes a router port, its address and every route through
// it, while frames may flow: a frame already routed to it is still sent to
// its link.
func (r *Router) RemovePort(p *Port) {
	r.change(func(l *layout) {
		l.ports = slices.DeleteFunc(l.ports, func(q *Port) bool { return q == p })
		if i := slices.Index(l.addrs, p.ip); i >= 0 {
			l.addrs = slices.Delete(l.addrs, i, i+1)
		}
		l.routes.routes = slices.DeleteFunc(l.routes.routes, func(rt route) bool { return rt.port == p })
		p.remove6(l)
	})
}

// AddRoute adds a route to prefix through port p via gateway gw (a zero gw
// means directly connected). An IPv6 prefix goes to the IPv6 table.
func (r *Router) AddRoute(prefix netip.Prefix, p *Port, gw netip.Addr) {
	if prefix.Addr().Is6() {
		r.addRoute6(prefix, p, gw)
		return
	}
	rt := route{prefix: prefix.Masked(), port: p}
	if gw.IsValid() {
		rt.gw, rt.hasGW = gw.As4(), true
	}
	r.change(func(l *layout) { l.routes.add(rt) })
}

// Ports returns the router's ports in the order they were added.
func (r *Router) Ports() []*Port { return r.lay.Load().ports }

// Neighbours returns the port's ARP cache.
func (p *Port) Neighbours() *arp.Cache { return p.arp }

// Tick runs every port's ARP and NDP timers and drops the fragments of datagrams
// whose reassembly timed out.
func (r *Router) Tick() {
	for _, p := range r.lay.Load().ports {
		p.arp.Tick()
		if p.nd != nil {
			p.nd.Tick()
		}
	}
	r.defrag.Tick()
}

// Defrag returns the router's fragment reassembler.
func (r *Router) Defrag() *defrag.Reassembler { return r.defrag }

// WriteFrame routes frame as arrived on p: a frame the network's switch
// delivers to the gateway enters the router here. It makes a port a
// packet.Egress (the device of its switch port); it never fails.
func (p *Port) WriteFrame(frame []byte, off packet.Offload) error {
	p.Input(frame, off)
	return nil
}

// TraceFrame routes frame as Input does, recording each decision in rec;
// with rec.Dry nothing is counted, tracked, resolved or sent (see package
// trace). It makes the port a trace.Follower.
func (p *Port) TraceFrame(frame []byte, off packet.Offload, rec *trace.Recorder) {
	if !rec.Enter() {
		rec.Dropped(p.Name, "loop", "the frame went round more stages than any path has")
		return
	}
	rec.Addf(trace.Ingress, "router/"+p.Name, "%s", trace.Describe(frame))
	p.input(frame, off, rec)
}

// drop counts a frame dropped on p for reason, or records it.
func (p *Port) drop(reason stats.Reason, rec *trace.Recorder) {
	if rec != nil {
		rec.Dropped("router/"+p.Name, reason.String(), "dropped by the router")
		if rec.Dry {
			return
		}
	}
	p.stats.Drop(reason)
}

// act records what the router does of its own for a traced frame (kind and
// text: see package trace) and reports whether it is to be done: always
// without a trace, never in a dry one.
func act(rec *trace.Recorder, kind, where, text string) bool {
	if rec == nil {
		return true
	}
	rec.Add(trace.Step{Kind: kind, Where: where, Text: text})
	return !rec.Dry
}

// act is act at port p (its name is only put together for a trace).
func (p *Port) act(rec *trace.Recorder, kind, text string) bool {
	if rec == nil {
		return true
	}
	return act(rec, kind, "router/"+p.Name, text)
}

// Input routes one frame that arrived on p; off is what its virtio-net
// header said (zero for a plain frame). The frame may be rewritten in place: only unicast frames to the port's own MAC are, and
// those reach no other port. A super-frame is routed whole (TTL and
// addresses changed once, only the pseudo-header part of a partial checksum
// adjusted) and segmented only where it must be: for the router's own use,
// for an ICMP error's quote, and when its segments exceed the egress MTU.
func (p *Port) Input(frame []byte, off packet.Offload) { p.input(frame, off, nil) }

func (p *Port) input(frame []byte, off packet.Offload, rec *trace.Recorder) {
	eth := packet.Ethernet(frame)
	if !eth.Valid() {
		p.drop(stats.Truncated, rec)
		return
	}
	switch eth.EtherType() {
	case packet.EtherTypeARP:
		a := packet.ARP(eth.Payload())
		if !a.Valid() {
			p.drop(stats.BadARP, rec)
			return
		}
		if p.act(rec, trace.Local, "ARP: to the router's ARP cache and responder") {
			p.arp.Input(a)
		}
		return
	case packet.EtherTypeIPv4:
	case packet.EtherTypeIPv6:
		p.input6(frame, off, rec)
		return
	default:
		if rec != nil {
			rec.Dropped("router/"+p.Name, "none", "not IP nor ARP: not routed, not counted")
		}
		return // VLAN-tagged, ...: not routed, and nothing to count
	}
	if eth.Dst() != p.MAC {
		if rec != nil {
			rec.Dropped("router/"+p.Name, "none", "broadcast or multicast IPv4: not routed, not counted")
		}
		return // broadcast or multicast IPv4: no router forwards it
	}
	ip := packet.IPv4(eth.Payload())
	if !ip.Valid() {
		p.drop(stats.BadIPHeader, rec)
		return
	}
	if !ip.HeaderChecksumValid() {
		p.drop(stats.BadChecksum, rec)
		return
	}
	frame = frame[:packet.EthernetHeaderLen+int(ip.TotalLen())] // drop Ethernet padding
	if ip.HeaderLen() > packet.IPv4MinHeaderLen {
		if reason, ok := checkOptions(ip); !ok {
			p.drop(reason, rec)
			return
		}
	}
	if ip.IsFragment() {
		if p.act(rec, trace.Queued, "a fragment: held for reassembly, then routed whole") {
			p.reassemble(frame)
		}
		return
	}
	p.route(frame, off, rec)
}

// reassemble holds a fragment until its datagram is whole, as Linux's
// nf_defrag_ipv4 does before conntrack, then routes the datagram: tracked
// and translated as a whole, and fragmented again where it leaves.
func (p *Port) reassemble(frame []byte) {
	d := p.r.defrag.Add(frame, p.stats)
	if d == nil {
		return
	}
	p.route(*d, packet.Offload{}, nil)
	p.r.defrag.Release(d)
}

// route takes an IPv4 frame whose header is valid through the hooks to
// its router address or its egress port.
func (p *Port) route(frame []byte, off packet.Offload, rec *trace.Recorder) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	src, dst := ip.Src(), ip.Dst()
	if martianSrc(src) || martianDst(dst) {
		p.drop(stats.Martian, rec)
		return
	}
	r := p.r
	fl := nat.Flow{Partial: off.NeedsCsum(), Rec: rec}
	if v := r.ct.Prerouting(&fl, ip, p.iface); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	dst0 := dst
	dst = ip.Dst()
	if r.isLocal(dst) {
		r.local(p, &fl, frame, off, rec)
		return
	}
	if dst == [4]byte{255, 255, 255, 255} || dst[0] >= 224 || r.isDirectedBroadcast(dst) {
		p.drop(stats.NotForwarded, rec)
		return
	}
	out, nh, ok := r.lay.Load().routes.lookup(dst)
	if rec != nil && ok {
		rec.Addf(trace.Route, "router", "%v via %s, next hop %v", netip.AddrFrom4(dst), out.Name, netip.AddrFrom4(nh))
	}
	if !ok {
		p.drop(stats.NoRoute, rec)
		if act(rec, trace.Send, "router", "answers with an ICMP error") {
			r.icmpError(frame, off, packet.ICMPUnreachable, packet.ICMPCodeNetUnreach, 0)
		}
		return
	}
	// A packet whose destination prerouting translated to a station of
	// the network it came from goes back there bridged, as br_netfilter
	// sends bridged-and-DNATed traffic: the hairpin keeps its TTL.
	bridged := out == p && dst != dst0
	if ip.TTL() <= 1 && !bridged {
		p.drop(stats.TTLExceeded, rec)
		if act(rec, trace.Send, "router", "answers with an ICMP error") {
			r.icmpError(frame, off, packet.ICMPTimeExceeded, 0, 0)
		}
		return
	}
	if v := r.ct.Filter(&fl, nat.Forward, out.iface); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	if int(ip.TotalLen()) > out.MTU && ip.DontFragment() && wireLen(ip, off) > out.MTU {
		p.drop(stats.FragNeeded, rec)
		if act(rec, trace.Send, "router", "answers with an ICMP error") {
			r.icmpError(frame, off, packet.ICMPUnreachable, packet.ICMPCodeFragNeeded, uint16(out.MTU))
		}
		return
	}
	if v := r.ct.Postrouting(&fl, ip, out.iface, out.ip); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	if !bridged {
		ip.DecTTL()
	}
	sendVia(out, out.arp.Cache, nh, frame, off, rec)
}

// wireLen is the IP length of the largest packet frame's IPv4 packet ip
// stands for on a wire: its own, or for a super-frame its first segment's.
func wireLen(ip packet.IPv4, off packet.Offload) int {
	n := int(ip.TotalLen())
	if !off.IsGSO() {
		return n
	}
	hdr := ip.HeaderLen() + packet.UDPHeaderLen
	if t := packet.TCP(ip.Payload()); ip.Protocol() == packet.ProtoTCP && t.Valid() {
		hdr = ip.HeaderLen() + t.HeaderLen()
	}
	return min(n, hdr+int(off.GSOSize))
}

// local takes a packet of either family for one of the router's own
// addresses, prerouting done, through the input hook to the host stage.
func (r *Router) local(p *Port, fl *nat.Flow, frame []byte, off packet.Offload, rec *trace.Recorder) {
	if v := r.ct.Filter(fl, nat.Input, ""); v.Action != nat.Accept {
		r.deny(p, frame, off, v, rec)
		return
	}
	if p.act(rec, trace.Local, "to the router's own address: the host stage (ICMP echo, TCP reset, port unreachable, DNS, the host's ports)") {
		r.localWire(p, frame, off)
	}
}

// deny counts a packet of either family a hook refused and, for reject,
// answers it: IPv4 TCP with a reset, the rest of IPv4 with ICMP port
// unreachable, IPv6 with ICMPv6 port unreachable, as ip6tables' REJECT
// does by default.
func (r *Router) deny(p *Port, frame []byte, off packet.Offload, v nat.Verdict, rec *trace.Recorder) {
	p.drop(v.Reason, rec)
	switch {
	case v.Action != nat.Reject:
	case frame[packet.EthernetHeaderLen]>>4 == 6:
		if act(rec, trace.Send, "router", "rejects: answers with ICMPv6 port unreachable") {
			r.icmpError6(frame, off, packet.ICMPv6DstUnreach, packet.ICMPv6CodePortUnrch, 0)
		}
	case !act(rec, trace.Send, "router", "rejects: answers with a TCP reset or ICMP port unreachable"):
	case packet.IPv4(frame[packet.EthernetHeaderLen:]).Protocol() == packet.ProtoTCP:
		if r.host != nil {
			r.host.Reset(frame)
		}
	default:
		r.icmpError(frame, off, packet.ICMPUnreachable, packet.ICMPCodePortUnreach, 0)
	}
}

// sendVia sends an IP frame out of p to next hop nh, resolving nh's MAC
// first if need be in nc, the port's cache of nh's family.
func sendVia[A neigh.Addr](p *Port, nc *neigh.Cache[A], nh A, frame []byte, off packet.Offload, rec *trace.Recorder) {
	eth := packet.Ethernet(frame)
	eth.SetSrc(p.MAC)
	var mac packet.MAC
	var ok bool
	if rec != nil && rec.Dry {
		var st neigh.State
		mac, st, ok = nc.Peek(nh)
		if ok {
			rec.Addf(trace.Neighbour, "router/"+p.Name, "%v is-at %v (%v)", neigh.AddrOf(nh), mac, st)
		}
	} else {
		mac, ok = nc.Lookup(nh)
		if rec != nil && ok {
			rec.Addf(trace.Neighbour, "router/"+p.Name, "%v is-at %v", neigh.AddrOf(nh), mac)
		}
	}
	if !ok {
		if rec != nil && !p.act(rec, trace.Queued, "no neighbour entry for "+neigh.AddrOf(nh).String()+": queued while it resolves (ARP, NDP)") {
			return
		}
		if nc.Resolve(nh, frame, off) {
			p.stats.Drop(stats.NeighQueue)
		}
		return
	}
	p.transmit(frame, off, mac, rec)
}

// transmit puts a frame with a resolved next hop on the wire, fragmenting
// it when it (or a segment of it) exceeds the port's MTU.
func (p *Port) transmit(frame []byte, off packet.Offload, mac packet.MAC, rec *trace.Recorder) {
	packet.Ethernet(frame).SetDst(mac)
	ipv4 := packet.Ethernet(frame).EtherType() == packet.EtherTypeIPv4 // IPv6 is never fragmented here
	if ipv4 && len(frame)-packet.EthernetHeaderLen > p.MTU && (!off.IsGSO() || wireLen(packet.IPv4(frame[packet.EthernetHeaderLen:]), off) > p.MTU) {
		if act(rec, trace.Egress, p.Name, "fragmented to the port's MTU") {
			p.r.fragment(p, frame, off)
		}
		return
	}
	if rec != nil {
		if f, ok := p.link.(trace.Follower); ok {
			f.TraceFrame(frame, off, rec)
			return
		}
		rec.Left(p.Name, frame)
		if rec.Dry {
			return
		}
	}
	p.send(frame, off)
}

// send hands a frame to p's link, counting it when the link refuses it.
func (p *Port) send(frame []byte, off packet.Offload) {
	if err := p.link.WriteFrame(frame, off); err != nil {
		p.stats.Drop(stats.TxError)
	}
}

func (r *Router) isLocal(ip [4]byte) bool {
	for _, a := range r.lay.Load().addrs {
		if a == ip {
			return true
		}
	}
	return false
}

func (r *Router) isDirectedBroadcast(ip [4]byte) bool {
	for _, p := range r.lay.Load().ports {
		if ip == p.bcast && ip != [4]byte{} {
			return true
		}
	}
	return false
}

func broadcastOf(pfx netip.Prefix) [4]byte {
	a := pfx.Masked().Addr().As4()
	host := ^uint32(0) >> pfx.Bits()
	return [4]byte{a[0] | byte(host>>24), a[1] | byte(host>>16), a[2] | byte(host>>8), a[3] | byte(host)}
}

// martianSrc: sources no router accepts (RFC 1812 5.3.7).
func martianSrc(a [4]byte) bool {
	return a[0] == 0 || a[0] == 127 || a[0] >= 224
}

// martianDst: destinations no router forwards or delivers.
func martianDst(a [4]byte) bool { return a[0] == 0 || a[0] == 127 }

// release sends a frame the port's ARP cache queued, now that its next
// hop resolved to mac.
func (p *Port) release(frame []byte, off packet.Offload, mac packet.MAC) {
	p.transmit(frame, off, mac, nil)
}

// unreachable answers a frame the port's ARP cache queued for a next hop
// that did not resolve: counted, and an ICMP host unreachable (ICMPv6
// address unreachable). The frame went through postrouting: conntrack
// translates it back first, so that the error quotes the packet its
// sender sent and reaches that sender, a masqueraded endpoint included.
func (p *Port) unreachable(frame []byte, off packet.Offload) {
	p.stats.Drop(stats.NeighFailed)
	if packet.Ethernet(frame).EtherType() == packet.EtherTypeIPv6 {
		p.r.ct.Untranslate6(packet.IPv6(frame[packet.EthernetHeaderLen:]), off.NeedsCsum())
		p.r.icmpError6(frame, off, packet.ICMPv6DstUnreach, packet.ICMPv6CodeAddrUnrch, 0)
		return
	}
	p.r.ct.Untranslate(packet.IPv4(frame[packet.EthernetHeaderLen:]), off.NeedsCsum())
	p.r.icmpError(frame, off, packet.ICMPUnreachable, packet.ICMPCodeHostUnreach, 0)
}
