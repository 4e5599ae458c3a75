package vswitch

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"uswitch/clock"
	"uswitch/packet"
	"uswitch/stats"
)

// Device is where a port's egress frames go: a TAP, an AF_PACKET socket, a
// router port, or an in-memory queue. WriteFrame must not keep frame.
type Device interface {
	WriteFrame(frame []byte) error
}

// DeviceFunc adapts a function to a Device.
type DeviceFunc func(frame []byte) error

// WriteFrame calls f.
func (f DeviceFunc) WriteFrame(frame []byte) error { return f(frame) }

// PortConfig describes a port being added to a switch.
type PortConfig struct {
	Name string
	// Secure turns on port security: frames whose source MAC is not MAC
	// are dropped and counted.
	Secure bool
	MAC    packet.MAC
	// Shared marks a port that several goroutines feed (a router port);
	// its receive counters then use atomic adds.
	Shared bool
}

// Port is one attachment of a switch. Its counters are live.
type Port struct {
	PortConfig
	Stats stats.Port
	dev   Device
	sw    *Switch
}

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

	// The FDB is read on every frame without a lock: readers load the map
	// pointer; writers (a new MAC, ageing, flushes) copy it under mu.
	fdb     atomic.Pointer[map[fdbKey]*entry]
	mu      sync.Mutex
	learned int // dynamic entries, under mu

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
	Frame(network, port string, frame []byte)
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
func (s *Switch) observe(p *Port, frame []byte) {
	if o := s.observer.Load(); o != nil && (*o).Active() {
		(*o).Frame(s.name, p.Name, frame)
	}
}

// New returns an empty switch.
func New(c Config) *Switch {
	if c.Ageing <= 0 {
		c.Ageing = 300 * time.Second
	}
	s := &Switch{name: c.Name, ageing: int64(c.Ageing), max: c.MaxEntries, clock: c.Clock}
	empty := map[fdbKey]*entry{}
	s.fdb.Store(&empty)
	s.ports.Store(&[]*Port{})
	return s
}

// Name is the network's name.
func (s *Switch) Name() string { return s.name }

// AddPort attaches dev under c.Name.
func (s *Switch) AddPort(c PortConfig, dev Device) (*Port, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.ports.Load()
	for _, p := range old {
		if p.Name == c.Name {
			return nil, fmt.Errorf("network %q: port %q already attached", s.name, c.Name)
		}
	}
	p := &Port{PortConfig: c, dev: dev, sw: s}
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
	s.rewriteLocked(func(e *entry) (keep bool) { return e.port.Load() != p }, Flushed)
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

// Input switches one frame that arrived on port in. It returns after the
// frame has been written to every egress port.
func (s *Switch) Input(in *Port, frame []byte) {
	if in.Shared {
		in.Stats.RxShared(len(frame))
	} else {
		in.Stats.Rx(len(frame))
	}
	s.observe(in, frame)
	eth := packet.Ethernet(frame)
	if !eth.Valid() {
		in.Stats.Drop(stats.Truncated)
		return
	}
	vlan, ok := eth.VLAN()
	if !ok {
		in.Stats.Drop(stats.Truncated)
		return
	}
	src, dst := eth.Src(), eth.Dst()
	if src.IsMulticast() || src.IsZero() {
		in.Stats.Drop(stats.BadSrcMAC)
		return
	}
	if in.Secure && src != in.MAC {
		in.Stats.Drop(stats.PortSecurity)
		return
	}
	now := s.clock.Now()
	fdb := *s.fdb.Load()
	s.learn(fdb, in, vlan, src, now)
	if !dst.IsMulticast() {
		if e := fdb[keyOf(vlan, dst)]; e != nil && (e.static || now-e.seen.Load() <= s.ageing) {
			out := e.port.Load()
			if out == in {
				in.Stats.Drop(stats.SamePort)
				return
			}
			out.write(frame)
			return
		}
	}
	for _, out := range *s.ports.Load() {
		if out != in {
			out.write(frame)
		}
	}
}

func (p *Port) write(frame []byte) {
	p.sw.observe(p, frame)
	if err := p.dev.WriteFrame(frame); err != nil {
		p.Stats.Drop(stats.TxError)
		return
	}
	p.Stats.Tx(len(frame))
}

// learn records that src was seen on in. Known stations are refreshed in
// place; only a new MAC takes the lock and copies the table.
func (s *Switch) learn(fdb map[fdbKey]*entry, in *Port, vlan uint16, src packet.MAC, now int64) {
	if e := fdb[keyOf(vlan, src)]; e != nil {
		if e.static {
			return
		}
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		if old := e.port.Load(); old != in && e.port.CompareAndSwap(old, in) {
			s.subs.publish(Event{Type: Moved, Network: s.name, MAC: src, VLAN: vlan, Port: in.Name, From: old.Name})
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.learned >= s.max {
		s.LearnRefused.Add(1)
		return
	}
	if s.insertLocked(vlan, src, in, false, now) {
		s.learned++
		s.subs.publish(Event{Type: Learned, Network: s.name, MAC: src, VLAN: vlan, Port: in.Name})
	}
}

// insertLocked adds an entry unless one exists; it reports whether it did.
func (s *Switch) insertLocked(vlan uint16, mac packet.MAC, p *Port, static bool, now int64) bool {
	old := *s.fdb.Load()
	k := keyOf(vlan, mac)
	if _, ok := old[k]; ok {
		return false // learned by another port's goroutine meanwhile
	}
	fdb := make(map[fdbKey]*entry, len(old)+1)
	for k, v := range old {
		fdb[k] = v
	}
	e := &entry{mac: mac, vlan: vlan, static: static}
	e.port.Store(p)
	e.seen.Store(now)
	fdb[k] = e
	s.fdb.Store(&fdb)
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
	s.rewriteLocked(func(e *entry) bool { return keyOf(e.vlan, e.mac) != k }, "")
	s.insertLocked(vlan, mac, p, true, s.clock.Now())
	return nil
}

// Expire forgets learned entries not seen within the ageing time. The
// datapath calls it periodically; tests call it after moving a fake clock.
func (s *Switch) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.rewriteLocked(func(e *entry) bool { return e.static || now-e.seen.Load() <= s.ageing }, Aged)
}

// rewriteLocked keeps the entries for which keep is true, publishing ev for
// each learned entry dropped (no event when ev is empty). It copies the
// table only when something goes.
func (s *Switch) rewriteLocked(keep func(*entry) bool, ev EventType) {
	old := *s.fdb.Load()
	var gone []*entry
	for _, e := range old {
		if !keep(e) {
			gone = append(gone, e)
		}
	}
	if len(gone) == 0 {
		return
	}
	fdb := make(map[fdbKey]*entry, len(old)-len(gone))
	for k, e := range old {
		if keep(e) {
			fdb[k] = e
		}
	}
	s.fdb.Store(&fdb)
	for _, e := range gone {
		if !e.static {
			s.learned--
		}
		if ev != "" {
			s.subs.publish(Event{Type: ev, Network: s.name, MAC: e.mac, VLAN: e.vlan, Port: e.port.Load().Name})
		}
	}
}

// Entries returns the FDB sorted by port then MAC, with ages.
func (s *Switch) Entries() []Entry {
	now := s.clock.Now()
	fdb := *s.fdb.Load()
	out := make([]Entry, 0, len(fdb))
	for _, e := range fdb {
		age := now - e.seen.Load()
		if !e.static && age > s.ageing {
			continue // expired; the next sweep removes it
		}
		out = append(out, Entry{MAC: e.mac, VLAN: e.vlan, Port: e.port.Load().Name, Static: e.static, Age: time.Duration(age)})
	}
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
