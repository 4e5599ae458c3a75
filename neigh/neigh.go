// Package neigh is the neighbour state machine the router's ARP (IPv4) and
// neighbour discovery (IPv6) caches share: one Cache per router port and
// address family that resolves next hops (queueing a bounded number of
// packets while a neighbour is incomplete) and keeps each entry's state
// (incomplete, reachable, stale, failed) with Linux-like timers. What goes
// on the wire (an ARP request, a neighbour solicitation) and what is read
// from it belongs to packages arp and ndp, which call Learn.
//
// Lookup, the per-packet path, is lock-free and allocation-free; everything
// else (resolution, learning, timers) is the slow path.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package neigh

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

// Addr is a neighbour's address: IPv4 or IPv6.
type Addr interface{ [4]byte | [16]byte }

// State is a neighbour entry's state, named as `ip neigh` names them.
type State uint32

// Neighbour states.
const (
	Incomplete State = iota // resolution in progress, packets queued
	Reachable               // confirmed within ReachableTime
	Stale                   // usable, but to be re-confirmed when used
	Failed                  // resolution failed
)

var stateNames = [...]string{"INCOMPLETE", "REACHABLE", "STALE", "FAILED"}

func (s State) String() string { return stateNames[s] }

// MarshalText makes states read well in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name back, for API clients.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown neighbour state %q", b)
}

// Config sets a cache's timers and limits; zero fields take Linux's
// defaults.
type Config struct {
	ReachableTime time.Duration // base_reachable_time: 30 s
	RetransTime   time.Duration // retrans_time: 1 s
	MaxProbes     int           // mcast_solicit / ucast_solicit: 3
	QueueLen      int           // packets queued per incomplete neighbour: 101 (unres_qlen)
	QueueBytes    int           // bytes queued per incomplete neighbour: 212992 (unres_qlen_bytes)
	FailedTTL     time.Duration // how long a failed entry is remembered: 20 s
	StaleTime     time.Duration // gc_staletime: an unused stale entry is forgotten after 60 s
	MaxEntries    int           // gc_thresh3: 1024
}

func (c *Config) defaults() {
	c.ReachableTime = cmp.Or(c.ReachableTime, 30*time.Second)
	c.RetransTime = cmp.Or(c.RetransTime, time.Second)
	c.MaxProbes = cmp.Or(c.MaxProbes, 3)
	c.QueueLen = cmp.Or(c.QueueLen, 101)
	c.QueueBytes = cmp.Or(c.QueueBytes, 212992)
	c.FailedTTL = cmp.Or(c.FailedTTL, 20*time.Second)
	c.StaleTime = cmp.Or(c.StaleTime, 60*time.Second)
	c.MaxEntries = cmp.Or(c.MaxEntries, 1024)
}

// Link is where a cache's frames go, whatever its protocol: its own
// (ARP, neighbour discovery) onto the port's network, and the frames it
// queued back to the router port it serves once their next hop resolved
// or failed.
type Link struct {
	// Wire takes the neighbour protocol's frames (plain, not kept after
	// the call): the router port's egress, its switch port. Its error is
	// ignored: a lost frame is retried or times out, as one lost on a
	// wire, and the egress that failed counts it.
	Wire packet.Egress
	// Release sends a queued frame (with the offloads it was queued with)
	// now that its next hop resolved to mac.
	Release func(frame []byte, off packet.Offload, mac packet.MAC)
	// Unreachable reports a queued frame whose next hop did not resolve,
	// for an ICMP host (address) unreachable.
	Unreachable func(frame []byte, off packet.Offload)
}

// Solicit asks the network for ip's link-layer address: to the broadcast
// (or solicited-node multicast) address when to is packet.Broadcast,
// else unicast to to (a stale entry's probe). It is the protocol's.
type Solicit[A Addr] func(ip A, to packet.MAC)

// queued is a frame waiting for its next hop, copied.
type queued struct {
	frame []byte
	off   packet.Offload
}

type neighbour[A Addr] struct {
	ip        A
	mac       atomic.Uint64 // packet.MAC.Uint64, valid unless Incomplete/Failed
	state     atomic.Uint32
	confirmed atomic.Int64 // last reply or request from it
	probed    atomic.Int64 // last probe sent
	probes    atomic.Int32 // unanswered probes
	queue     []queued     // under Cache.mu
	qbytes    int          // the queued frames' bytes, under Cache.mu
	created   int64
}

// table is one version of a cache's entries, and the entry Lookup found
// last in it, which the next Lookup tries before the map: most packets go
// to the next hop the one before went to (the uplink's host side, say),
// and an IPv6 address hashes slower than an IPv4 one. A new version starts
// without one, so an entry forgotten is never found there.
type table[A Addr] struct {
	m   map[A]*neighbour[A]
	hot atomic.Pointer[neighbour[A]]
}

// Cache is the neighbour table of one router port for one address family.
type Cache[A Addr] struct {
	cfg     Config
	clock   clock.Clock
	out     Link
	solicit Solicit[A]

	table atomic.Pointer[table[A]] // copy on write
	mu    sync.Mutex

	// Counters for `uswitch ports` and tests.
	QueueDrops atomic.Uint64 // packets dropped because a neighbour's queue was full
	TableFull  atomic.Uint64 // resolutions refused because the table was full
}

// New returns an empty cache that resolves with solicit and hands
// released and unreachable frames to out.
func New[A Addr](cfg Config, clk clock.Clock, out Link, solicit Solicit[A]) *Cache[A] {
	cfg.defaults()
	c := &Cache[A]{cfg: cfg, clock: clk, out: out, solicit: solicit}
	c.table.Store(&table[A]{m: map[A]*neighbour[A]{}})
	return c
}

// Lookup returns the MAC of a usable neighbour. It never blocks or
// allocates; a stale entry stays usable and is re-probed by unicast.
func (c *Cache[A]) Lookup(ip A) (packet.MAC, bool) {
	t := c.table.Load()
	n := t.hot.Load()
	if n == nil || n.ip != ip {
		if n = t.m[ip]; n == nil {
			return packet.MAC{}, false
		}
		t.hot.Store(n)
	}
	now := c.clock.Now()
	switch State(n.state.Load()) {
	case Reachable:
		if now-n.confirmed.Load() > int64(c.cfg.ReachableTime) {
			n.state.CompareAndSwap(uint32(Reachable), uint32(Stale))
		}
	case Stale:
		if now-n.probed.Load() >= int64(c.cfg.RetransTime) && n.probes.Load() < int32(c.cfg.MaxProbes) {
			n.probed.Store(now)
			n.probes.Add(1)
			c.solicit(n.ip, macOf(n.mac.Load()))
		}
	default:
		return packet.MAC{}, false
	}
	return macOf(n.mac.Load()), true
}

// Peek returns what Lookup would for ip and the entry's state, without
// changing the entry or probing it (for a dry trace).
func (c *Cache[A]) Peek(ip A) (packet.MAC, State, bool) {
	n := c.table.Load().m[ip]
	if n == nil {
		return packet.MAC{}, 0, false
	}
	st := State(n.state.Load())
	if st != Reachable && st != Stale {
		return packet.MAC{}, st, false
	}
	return macOf(n.mac.Load()), st, true
}

// Resolve queues frame (copied) and its offloads until ip resolves,
// starting resolution if none is under way. When the queue is full (in
// packets or in bytes) the oldest frames are dropped, as Linux does.
// It reports whether a packet was dropped to make room (or frame itself,
// when the table is full).
func (c *Cache[A]) Resolve(ip A, frame []byte, off packet.Offload) (dropped bool) {
	mac, resolved, dropped := c.enqueue(ip, frame, off)
	if resolved {
		c.out.Release(frame, off, mac)
	}
	return dropped
}

// enqueue queues frame for ip, or reports the MAC if ip resolved meanwhile
// (another goroutine may have learned it since the caller's Lookup).
func (c *Cache[A]) enqueue(ip A, frame []byte, off packet.Offload) (mac packet.MAC, resolved, dropped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	n := c.table.Load().m[ip]
	if n != nil {
		if st := State(n.state.Load()); st == Reachable || st == Stale {
			return macOf(n.mac.Load()), true, false
		}
	}
	start := false
	switch {
	case n == nil:
		if len(c.table.Load().m) >= c.cfg.MaxEntries && !c.gcLocked(now) {
			c.TableFull.Add(1)
			return packet.MAC{}, false, true
		}
		n = &neighbour[A]{ip: ip, created: now}
		c.insertLocked(n)
		start = true
	case State(n.state.Load()) == Failed:
		n.state.Store(uint32(Incomplete))
		n.created = now
		start = true
	}
	if start {
		n.probes.Store(1)
		n.probed.Store(now)
		c.solicit(ip, packet.Broadcast)
	}
	for len(n.queue) > 0 && (len(n.queue) >= c.cfg.QueueLen || n.qbytes+len(frame) > c.cfg.QueueBytes) {
		n.qbytes -= len(n.queue[0].frame)
		n.queue[0] = queued{}
		n.queue = n.queue[1:]
		c.QueueDrops.Add(1)
		dropped = true
	}
	n.queue = append(n.queue, queued{append([]byte(nil), frame...), off})
	n.qbytes += len(frame)
	return packet.MAC{}, false, dropped
}

// Learn records that ip is at mac, confirmed now, and sends the frames
// queued for it. Without create, only an existing entry is updated (what
// Linux does with gratuitous ARP and unsolicited advertisements).
func (c *Cache[A]) Learn(ip A, mac packet.MAC, create bool) {
	now := c.clock.Now()
	n := c.table.Load().m[ip]
	if n == nil && !create {
		return
	}
	c.mu.Lock()
	n = c.table.Load().m[ip]
	if n == nil {
		if len(c.table.Load().m) >= c.cfg.MaxEntries && !c.gcLocked(now) {
			c.mu.Unlock()
			c.TableFull.Add(1)
			return
		}
		n = &neighbour[A]{ip: ip, created: now}
		c.insertLocked(n)
	}
	n.mac.Store(mac.Uint64())
	n.confirmed.Store(now)
	n.probes.Store(0)
	n.state.Store(uint32(Reachable))
	queued := n.queue
	n.queue, n.qbytes = nil, 0
	c.mu.Unlock()
	for _, q := range queued {
		c.out.Release(q.frame, q.off, mac)
	}
}

// Tick runs the timers: resolicits incomplete entries, fails those out of
// probes (reporting their queued packets as unreachable), fails stale
// entries whose unicast probes went unanswered, and forgets failed entries
// after FailedTTL and unused stale ones after StaleTime. The datapath
// calls it every RetransTime or so.
func (c *Cache[A]) Tick() {
	now := c.clock.Now()
	var unreachable []queued
	c.mu.Lock()
	for _, n := range c.table.Load().m {
		switch State(n.state.Load()) {
		case Incomplete:
			if now-n.probed.Load() < int64(c.cfg.RetransTime) {
				continue
			}
			if int(n.probes.Load()) >= c.cfg.MaxProbes {
				n.state.Store(uint32(Failed))
				n.confirmed.Store(now)
				unreachable = append(unreachable, n.queue...)
				n.queue, n.qbytes = nil, 0
				continue
			}
			n.probes.Add(1)
			n.probed.Store(now)
			c.solicit(n.ip, packet.Broadcast)
		case Stale:
			if int(n.probes.Load()) >= c.cfg.MaxProbes && now-n.probed.Load() >= int64(c.cfg.RetransTime) {
				n.state.Store(uint32(Failed))
				n.confirmed.Store(now)
			}
		}
	}
	c.gcLocked(now)
	c.mu.Unlock()
	for _, q := range unreachable {
		c.out.Unreachable(q.frame, q.off)
	}
}

// gcLocked forgets failed entries older than FailedTTL and stale entries
// nobody used (so never probed) for StaleTime; it reports whether anything
// went.
func (c *Cache[A]) gcLocked(now int64) bool {
	old := c.table.Load().m
	keep := func(n *neighbour[A]) bool {
		age := now - n.confirmed.Load()
		switch State(n.state.Load()) {
		case Failed:
			return age < int64(c.cfg.FailedTTL)
		case Reachable, Stale:
			return n.probes.Load() > 0 || age < int64(c.cfg.ReachableTime+c.cfg.StaleTime)
		}
		return true
	}
	removed := 0
	for _, n := range old {
		if !keep(n) {
			removed++
		}
	}
	if removed == 0 {
		return false
	}
	t := make(map[A]*neighbour[A], len(old)-removed)
	for ip, n := range old {
		if keep(n) {
			t[ip] = n
		}
	}
	c.table.Store(&table[A]{m: t})
	return true
}

// Forget removes ip's entry (its host is gone) and drops the frames queued
// for it.
func (c *Cache[A]) Forget(ip A) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.table.Load().m
	if old[ip] == nil {
		return
	}
	t := make(map[A]*neighbour[A], len(old))
	for a, n := range old {
		if a != ip {
			t[a] = n
		}
	}
	c.table.Store(&table[A]{m: t})
}

func (c *Cache[A]) insertLocked(n *neighbour[A]) {
	old := c.table.Load().m
	t := make(map[A]*neighbour[A], len(old)+1)
	for ip, m := range old {
		t[ip] = m
	}
	t[n.ip] = n
	c.table.Store(&table[A]{m: t})
}

func macOf(v uint64) packet.MAC {
	return packet.MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// AddrOf is a neighbour's address as a netip.Addr (the slow paths' form).
func AddrOf[A Addr](a A) netip.Addr {
	switch a := any(a).(type) {
	case [4]byte:
		return netip.AddrFrom4(a)
	case [16]byte:
		return netip.AddrFrom16(a)
	}
	return netip.Addr{}
}

// Entry is a neighbour as `uswitch neigh` shows it.
type Entry struct {
	IP    string        `json:"ip"`
	MAC   *packet.MAC   `json:"mac,omitempty"`
	State State         `json:"state"`
	Age   time.Duration `json:"age_ns"` // since last confirmation
	Queue int           `json:"queued"`
}

// Entries returns the table sorted by address.
func (c *Cache[A]) Entries() []Entry {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.table.Load().m
	ns := make([]*neighbour[A], 0, len(t))
	for _, n := range t {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *neighbour[A]) int { return AddrOf(a.ip).Compare(AddrOf(b.ip)) })
	out := make([]Entry, 0, len(t))
	for _, n := range ns {
		st := State(n.state.Load())
		if st == Reachable && now-n.confirmed.Load() > int64(c.cfg.ReachableTime) {
			st = Stale
		}
		e := Entry{IP: AddrOf(n.ip).String(), State: st, Age: time.Duration(now - n.confirmed.Load()), Queue: len(n.queue)}
		if st == Reachable || st == Stale {
			m := macOf(n.mac.Load())
			e.MAC = &m
		}
		if st == Incomplete {
			e.Age = time.Duration(now - n.created)
		}
		out = append(out, e)
	}
	return out
}
