package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// PortConfig describes a port being added to a switch.
type PortConfig struct {
	Name string
	// Secure turns on port security for an endpoint's port: frames whose
	// source MAC is not MAC, IPv4 packets whose source is neither IP nor
	// 0.0.0.0 and ARP packets whose sender MAC is not MAC or whose sender
	// IP is neither IP nor 0.0.0.0 are dropped and counted (port-security,
	// spoofed-ip, spoofed-arp). So an endpoint can neither steal another
	// station's MAC nor claim the gateway's or a neighbour's address in
	// ARP. The 0.0.0.0 exception lets DHCP-style discovers and ARP probes
	// (RFC 5227) through. Tagged frames (802.1Q, 802.1ad: vlan-tagged),
	// DHCP server messages (dhcp-server) and, for IPv6, sources other than
	// the endpoint's link-local address and IP6, router advertisements and
	// redirects, and neighbour advertisements for others' addresses
	// (spoofed-ipv6, ra-guard, spoofed-nd) are dropped too (guard.go).
	// It is the port's setting when added; Port.SetSecure changes it
	// while frames flow.
	Secure bool
	MAC    packet.MAC
	// IP is the endpoint's IPv4 address on this port (used when Secure).
	IP [4]byte
	// IP6 is the endpoint's IPv6 address on this port, all zeros when it
	// has none (used when Secure).
	IP6 [16]byte
	// Shared marks a port that several goroutines feed (a router port);
	// its receive counters then use atomic adds.
	Shared bool
	// MTU is the largest IP packet the port's device takes (0: no limit).
	// Like a Linux bridge (is_skb_forwardable), a frame larger than that
	// plus the Ethernet header and one VLAN tag is dropped, counted as
	// mtu-exceeded, rather than delivered; a super-frame passes (its
	// segments are what the wire carries).
	MTU int
}

// Port is one attachment of a switch. Its counters are live.
type Port struct {
	PortConfig
	Stats  stats.Port
	dev    packet.Egress // where the port's egress frames go
	sw     *Switch
	secure atomic.Bool // what Input checks: PortConfig.Secure, then SetSecure
}

// SetSecure turns the port's port security on or off while frames flow
// (an apply that changes an endpoint's port_security).
func (p *Port) SetSecure(on bool) { p.secure.Store(on) }

// Config sets up a switch.
type Config struct {
	Name       string        // the network's name
	Ageing     time.Duration // learned entries older than this are forgotten
	MaxEntries int           // learned entries beyond this are not learned (0: no limit)
	Clock      clock.Clock
}

// Switch is a learning switch for one network.
type Switch struct {
	name   string
	ageing int64
	max    int
	clock  clock.Clock

	ports atomic.Pointer[[]*Port] // copy on write: read per flood without a lock

	// The FDB is read on every frame without a lock: readers load the
	// table pointer and probe it; writers (a new MAC, a move, ageing,
	// flushes) hold mu, add rows in place and replace the table only to
	// grow it (doubling: learning is O(1) amortized) or to drop rows
	// (fdb.go).
	fdb     atomic.Pointer[table]
	mu      sync.Mutex
	learned atomic.Int64 // dynamic entries; changed under mu, read without it

	// LearnRefused counts new MACs not learned because the FDB was full.
	LearnRefused atomic.Uint64

	subs subscribers

	observer atomic.Pointer[Observer] // nil: nobody captures
}

// Observer sees the frames of a switch's ports, for packet capture
// (*capture.Hub is one). The switch calls Frame, when Active reports true,
// for every frame a port receives (before any check, so dropped frames are
// seen too) and for every frame it sends (just before handing it to the
// port's device: the gateway port's device is the router, which rewrites
// frames in place and may answer before it returns). Frame must not keep
// frame and must not block.
type Observer interface {
	Active() bool
	Frame(network, port string, frame []byte, off packet.Offload)
}

// SetObserver makes o the switch's observer; nil removes it. Without one a
// frame costs one atomic load more.
func (s *Switch) SetObserver(o Observer) {
	if o == nil {
		s.observer.Store(nil)
		return
	}
	s.observer.Store(&o)
}

// observe hands a frame of port p to the observer, if one is set and active.
func (s *Switch) observe(p *Port, frame []byte, off packet.Offload) {
	if o := s.observer.Load(); o != nil && (*o).Active() {
		(*o).Frame(s.name, p.Name, frame, off)
	}
}

// New returns an empty switch.
func New(c Config) *Switch {
	if c.Ageing <= 0 {
		c.Ageing = 300 * time.Second
	}
	s := &Switch{name: c.Name, ageing: int64(c.Ageing), max: c.MaxEntries, clock: c.Clock}
	s.fdb.Store(newTable(0, newSeed()))
	s.ports.Store(&[]*Port{})
	return s
}

// Name is the network's name.
func (s *Switch) Name() string { return s.name }

// AddPort attaches dev under c.Name: the frames the switch sends out of
// the port go to dev (a device, or the router's port on this network),
// which must not keep them. A device that cannot take a frame's offloads
// (a super-frame, a partial checksum) turns it into wire frames itself.
func (s *Switch) AddPort(c PortConfig, dev packet.Egress) (*Port, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.ports.Load()
	for _, p := range old {
		if p.Name == c.Name {
			return nil, fmt.Errorf("network %q: port %q already attached", s.name, c.Name)
		}
	}
	p := &Port{PortConfig: c, dev: dev, sw: s}
	p.secure.Store(c.Secure)
	ports := append(append(make([]*Port, 0, len(old)+1), old...), p)
	s.ports.Store(&ports)
	return p, nil
}

// RemovePort detaches p and flushes every entry learned on it.
func (s *Switch) RemovePort(p *Port) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.ports.Load()
	ports := make([]*Port, 0, len(old))
	for _, q := range old {
		if q != p {
			ports = append(ports, q)
		}
	}
	s.ports.Store(&ports)
	s.rewriteLocked(func(e *slot) (keep bool) { return e.port.Load() != p }, Flushed)
}

// Ports returns the attached ports in attachment order.
func (s *Switch) Ports() []*Port { return *s.ports.Load() }

// Port returns the port named name, or nil.
func (s *Switch) Port(name string) *Port {
	for _, p := range *s.ports.Load() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Input switches one frame that arrived on port in; off is what its
// virtio-net header said (zero for a plain frame). It returns after the frame has been
// written to every egress port; the frame is forwarded as it came, a
// super-frame unsegmented, and each egress device makes of it what it can
// take.
func (s *Switch) Input(in *Port, frame []byte, off packet.Offload) { s.input(in, frame, off, nil) }

// Trace switches frame as Input does, recording each decision in rec. With
// rec.Dry nothing is learned, counted, captured or written: the egress
// ports are recorded, and a frame for a port whose device is a
// trace.Follower (the router's port) goes on through its trace.
func (s *Switch) Trace(in *Port, frame []byte, off packet.Offload, rec *trace.Recorder) {
	if !rec.Enter() {
		rec.Dropped(in.where(), "loop", "the frame went round more stages than any path has")
		return
	}
	rec.Addf(trace.Ingress, in.where(), "%s", trace.Describe(frame))
	s.input(in, frame, off, rec)
}

// WriteFrame switches frame as received on p: p is the egress of what is
// plugged into it (the router's port on the network). It makes a port a
// packet.Egress; it never fails.
func (p *Port) WriteFrame(frame []byte, off packet.Offload) error {
	p.sw.input(p, frame, off, nil)
	return nil
}

// TraceFrame is WriteFrame for a traced frame (Trace). It makes a port a
// trace.Follower.
func (p *Port) TraceFrame(frame []byte, off packet.Offload, rec *trace.Recorder) {
	p.sw.Trace(p, frame, off, rec)
}

// where names p in a trace: network/port, or the port alone on the
// uplink's switch, which has no network name.
func (p *Port) where() string {
	if p.sw.name == "" {
		return p.Name
	}
	return p.sw.name + "/" + p.Name
}

// drop counts a frame of p dropped for r, or records it.
func (p *Port) drop(r stats.Reason, rec *trace.Recorder) {
	if rec != nil {
		rec.Dropped(p.where(), r.String(), "dropped at the switch")
		if rec.Dry {
			return
		}
	}
	p.Stats.Drop(r)
}

func (s *Switch) input(in *Port, frame []byte, off packet.Offload, rec *trace.Recorder) {
	if rec == nil || !rec.Dry {
		if in.Shared {
			in.Stats.RxShared(len(frame))
		} else {
			in.Stats.Rx(len(frame))
		}
		s.observe(in, frame, off)
	}
	eth := packet.Ethernet(frame)
	if !eth.Valid() {
		in.drop(stats.Truncated, rec)
		return
	}
	vlan, ok := eth.VLAN()
	if !ok {
		in.drop(stats.Truncated, rec)
		return
	}
	src, dst := eth.Src(), eth.Dst()
	if src.IsMulticast() || src.IsZero() {
		in.drop(stats.BadSrcMAC, rec)
		return
	}
	if in.secure.Load() {
		r, ok := in.check(eth, src)
		if rec != nil {
			rec.Add(trace.Step{Kind: trace.Security, Where: in.where(), Text: securityText(ok, in)})
		}
		if !ok {
			in.drop(r, rec)
			return
		}
	}
	now := s.clock.Now()
	fdb := s.fdb.Load()
	if rec == nil || !rec.Dry {
		s.learn(fdb, in, vlan, src, now)
	}
	if !dst.IsMulticast() {
		if e := fdb.find(keyOf(vlan, dst)); e != nil && (now-e.seen.Load() <= s.ageing || e.static()) {
			out := e.port.Load()
			if rec != nil {
				rec.Addf(trace.FDB, s.name, "%v is on port %s", dst, out.Name)
			}
			if out == in {
				in.drop(stats.SamePort, rec)
				return
			}
			out.write(frame, off, rec)
			return
		}
	} else if isLinkLocalGroup(dst) {
		in.drop(stats.LinkLocalGroup, rec)
		return
	}
	ports := *s.ports.Load()
	if rec != nil {
		var names []string
		for _, out := range ports {
			if out != in {
				names = append(names, out.Name)
			}
		}
		rec.Addf(trace.FDB, s.name, "%v unknown or multicast: flood to %v", dst, names)
	}
	for _, out := range ports {
		if out != in {
			out.write(frame, off, rec)
		}
	}
}

// securityText says what port security made of a frame from p.
func securityText(ok bool, p *Port) string {
	if ok {
		return fmt.Sprintf("port security: source MAC %v and IP %v are the endpoint's own", p.MAC, netip.AddrFrom4(p.IP))
	}
	return fmt.Sprintf("port security: not from the endpoint (MAC %v, IP %v)", p.MAC, netip.AddrFrom4(p.IP))
}

// check applies port security to a valid frame from a secure port p whose
// source MAC is src. It reports whether the frame may pass, and if not why.
func (p *Port) check(eth packet.Ethernet, src packet.MAC) (stats.Reason, bool) {
	if src != p.MAC {
		return stats.PortSecurity, false
	}
	switch eth.EtherType() {
	case packet.EtherTypeIPv4:
		ip := packet.IPv4(eth.Payload())
		if len(ip) < packet.IPv4MinHeaderLen {
			return stats.Truncated, false // no source to check
		}
		if s := ip.Src(); s != p.IP && s != ([4]byte{}) {
			return stats.SpoofedIP, false
		}
		if dhcpServer(ip) {
			return stats.DHCPServer, false
		}
	case packet.EtherTypeARP:
		a := packet.ARP(eth.Payload())
		if !a.Valid() {
			return stats.BadARP, false // nothing a secure port needs to send
		}
		if a.SenderMAC() != p.MAC {
			return stats.SpoofedARP, false
		}
		if s := a.SenderIP(); s != p.IP && s != ([4]byte{}) {
			return stats.SpoofedARP, false
		}
	case packet.EtherTypeIPv6:
		return p.checkIPv6(eth.Payload())
	case packet.EtherTypeVLAN, etherTypeQinQ, etherTypeQinQv1:
		return stats.Tagged, false // see isTagged
	}
	return 0, true
}

func (p *Port) write(frame []byte, off packet.Offload, rec *trace.Recorder) {
	if p.MTU > 0 && len(frame) > p.MTU+packet.EthernetHeaderLen+4 && !off.IsGSO() {
		p.drop(stats.MTUExceeded, rec)
		return
	}
	if rec != nil {
		if f, ok := p.dev.(trace.Follower); ok {
			if !rec.Dry {
				p.sw.observe(p, frame, off)
				p.Stats.Tx(len(frame))
			}
			f.TraceFrame(frame, off, rec)
			return
		}
		rec.Left(p.where(), frame)
		if rec.Dry {
			return
		}
	}
	p.sw.observe(p, frame, off)
	if err := p.dev.WriteFrame(frame, off); err != nil {
		p.Stats.Drop(stats.TxError)
		return
	}
	p.Stats.Tx(len(frame))
}

// learn records that src was seen on in. Known stations are refreshed in
// place without a lock; a new MAC or a move takes the lock.
func (s *Switch) learn(fdb *table, in *Port, vlan uint16, src packet.MAC, now int64) {
	if e := fdb.find(keyOf(vlan, src)); e != nil {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		if e.port.Load() != in && !e.static() {
			s.move(in, vlan, src, now)
		}
		return
	}
	// A full table refuses without the lock, so a MAC flood does not make
	// every reader queue on it.
	if s.max > 0 && s.learned.Load() >= int64(s.max) {
		s.LearnRefused.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.learned.Load() >= int64(s.max) {
		s.LearnRefused.Add(1)
		return
	}
	if s.insertLocked(vlan, src, in, false, now) {
		s.learned.Add(1)
		s.subs.publish(Event{Type: Learned, Network: s.name, MAC: src, VLAN: vlan, Port: in.Name})
	}
}

// move puts a learned station on port in, under the lock and in the
// current table (the one the caller read may have been replaced).
func (s *Switch) move(in *Port, vlan uint16, src packet.MAC, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.fdb.Load().find(keyOf(vlan, src))
	if e == nil || e.static() {
		return // flushed or pinned meanwhile: the next frame learns it
	}
	old := e.port.Load()
	if old == in {
		return
	}
	e.port.Store(in)
	e.seen.Store(now)
	s.subs.publish(Event{Type: Moved, Network: s.name, MAC: src, VLAN: vlan, Port: in.Name, From: old.Name})
}

// insertLocked adds a row unless one exists; it reports whether it did.
func (s *Switch) insertLocked(vlan uint16, mac packet.MAC, p *Port, static bool, now int64) bool {
	k := keyOf(vlan, mac)
	t := s.fdb.Load()
	if t.find(k) != nil {
		return false // learned by another port's goroutine meanwhile
	}
	if t.full() {
		t = t.grown()
		s.fdb.Store(t)
	}
	t.put(k, p, static, now)
	return true
}

// AddStatic pins mac on port p, like `bridge fdb add ... static`. A learned
// entry for the same MAC is replaced.
func (s *Switch) AddStatic(vlan uint16, mac packet.MAC, p *Port) error {
	if mac.IsMulticast() {
		return errors.New("static FDB entries must be unicast MACs")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(vlan, mac)
	s.rewriteLocked(func(e *slot) bool { return e.fdbKey() != k }, "")
	s.insertLocked(vlan, mac, p, true, s.clock.Now())
	return nil
}

// Expire forgets learned entries not seen within the ageing time. The
// datapath calls it periodically; tests call it after moving a fake clock.
func (s *Switch) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.rewriteLocked(func(e *slot) bool { return e.static() || now-e.seen.Load() <= s.ageing }, Aged)
}

// rewriteLocked keeps the rows for which keep is true, publishing ev for
// each learned row dropped (no event when ev is empty). It replaces the
// table only when something goes.
func (s *Switch) rewriteLocked(keep func(*slot) bool, ev EventType) {
	old := s.fdb.Load()
	drop := 0
	old.rows(func(e *slot) {
		if !keep(e) {
			drop++
		}
	})
	if drop == 0 {
		return
	}
	// keep is asked once more per row, and that answer counts: a station
	// refreshed since the count stays.
	nt := newTable(old.n-drop, old.seed)
	var gone []Event
	old.rows(func(e *slot) {
		if keep(e) {
			nt.put(e.fdbKey(), e.port.Load(), e.static(), e.seen.Load())
			return
		}
		if !e.static() {
			s.learned.Add(-1)
		}
		if ev != "" {
			gone = append(gone, Event{Type: ev, Network: s.name, MAC: e.mac(), VLAN: e.vlan(), Port: e.port.Load().Name})
		}
	})
	s.fdb.Store(nt)
	for _, e := range gone {
		s.subs.publish(e)
	}
}

// Len is the number of entries Entries would list (static, or learned and
// not expired), counted without listing them: a metrics scrape of a table
// of a million stations reads it once instead of building and sorting a
// million rows.
func (s *Switch) Len() int {
	now := s.clock.Now()
	n := 0
	s.fdb.Load().rows(func(e *slot) {
		if e.static() || now-e.seen.Load() <= s.ageing {
			n++
		}
	})
	return n
}

// Entries returns the FDB sorted by port then MAC, with ages.
func (s *Switch) Entries() []Entry {
	now := s.clock.Now()
	fdb := s.fdb.Load()
	out := []Entry{}
	fdb.rows(func(e *slot) {
		age := now - e.seen.Load()
		static := e.static()
		if !static && age > s.ageing {
			return // expired; the next sweep removes it
		}
		out = append(out, Entry{MAC: e.mac(), VLAN: e.vlan(), Port: e.port.Load().Name, Static: static, Age: time.Duration(age)})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].MAC.Uint64() < out[j].MAC.Uint64()
	})
	return out
}

// Subscribe returns a channel of FDB events and a cancel function. Events
// for a subscriber that does not keep up are dropped, never waited for.
func (s *Switch) Subscribe() (<-chan Event, func()) { return s.subs.add() }
