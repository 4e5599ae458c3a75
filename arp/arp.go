// Package arp owns the router's neighbour tables: one Cache per router port
// that answers ARP for the port's own address, resolves next hops (queueing a
// bounded number of packets while a neighbour is incomplete), keeps each
// entry's state (incomplete, reachable, stale, failed) with Linux-like
// timers, and learns from requests addressed to it and gratuitous ARP.
//
// Lookup, the per-packet path, is lock-free and allocation-free; everything
// else (resolution, replies, timers) is the slow path.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package arp

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

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
	if c.ReachableTime == 0 {
		c.ReachableTime = 30 * time.Second
	}
	if c.RetransTime == 0 {
		c.RetransTime = time.Second
	}
	if c.MaxProbes == 0 {
		c.MaxProbes = 3
	}
	if c.QueueLen == 0 {
		c.QueueLen = 101
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 212992
	}
	if c.FailedTTL == 0 {
		c.FailedTTL = 20 * time.Second
	}
	if c.StaleTime == 0 {
		c.StaleTime = 60 * time.Second
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = 1024
	}
}

// Output is where a cache's frames go: its ARP requests and replies onto
// the port's network, and the frames it queued back to the router port it
// serves once their next hop resolved or failed.
type Output struct {
	// Wire takes the ARP frames (plain, not kept after the call): the
	// egress of the router port, its switch port.
	Wire packet.Egress
	// Release sends a queued frame (with the offloads it was queued with)
	// now that its next hop resolved to mac.
	Release func(frame []byte, off packet.Offload, mac packet.MAC)
	// Unreachable reports a queued frame whose next hop did not resolve,
	// for an ICMP host unreachable.
	Unreachable func(frame []byte, off packet.Offload)
}

// queued is a frame waiting for its next hop, copied.
type queued struct {
	frame []byte
	off   packet.Offload
}

type neighbour struct {
	ip        [4]byte
	mac       atomic.Uint64 // packet.MAC.Uint64, valid unless Incomplete/Failed
	state     atomic.Uint32
	confirmed atomic.Int64 // last reply or request from it
	probed    atomic.Int64 // last probe sent
	probes    atomic.Int32 // unanswered probes
	queue     []queued     // under Cache.mu
	qbytes    int          // the queued frames' bytes, under Cache.mu
	created   int64
}

// Cache is the neighbour table of one router port.
type Cache struct {
	cfg   Config
	mac   packet.MAC
	ip    [4]byte
	clock clock.Clock
	out   Output

	table atomic.Pointer[map[[4]byte]*neighbour] // copy on write
	mu    sync.Mutex

	// Counters for `uswitch ports` and tests.
	QueueDrops atomic.Uint64 // packets dropped because a neighbour's queue was full
	TableFull  atomic.Uint64 // resolutions refused because the table was full

	bufs sync.Pool
}

// New returns the cache of a router port owning ip with mac.
func New(cfg Config, mac packet.MAC, ip [4]byte, clk clock.Clock, out Output) *Cache {
	cfg.defaults()
	c := &Cache{cfg: cfg, mac: mac, ip: ip, clock: clk, out: out}
	c.table.Store(&map[[4]byte]*neighbour{})
	c.bufs.New = func() any { b := make([]byte, packet.ARPFrameLen); return &b }
	return c
}

// Lookup returns the MAC of a usable neighbour. It never blocks or
// allocates; a stale entry stays usable and is re-probed by unicast.
func (c *Cache) Lookup(ip [4]byte) (packet.MAC, bool) {
	n := (*c.table.Load())[ip]
	if n == nil {
		return packet.MAC{}, false
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
			c.request(n.ip, macOf(n.mac.Load()))
		}
	default:
		return packet.MAC{}, false
	}
	return macOf(n.mac.Load()), true
}

// Peek returns what Lookup would for ip and the entry's state, without
// changing the entry or probing it (for a dry trace).
func (c *Cache) Peek(ip [4]byte) (packet.MAC, State, bool) {
	n := (*c.table.Load())[ip]
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
func (c *Cache) Resolve(ip [4]byte, frame []byte, off packet.Offload) (dropped bool) {
	mac, resolved, dropped := c.enqueue(ip, frame, off)
	if resolved {
		c.out.Release(frame, off, mac)
	}
	return dropped
}

// enqueue queues frame for ip, or reports the MAC if ip resolved meanwhile
// (another goroutine may have learned it since the caller's Lookup).
func (c *Cache) enqueue(ip [4]byte, frame []byte, off packet.Offload) (mac packet.MAC, resolved, dropped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	n := (*c.table.Load())[ip]
	if n != nil {
		if st := State(n.state.Load()); st == Reachable || st == Stale {
			return macOf(n.mac.Load()), true, false
		}
	}
	start := false
	switch {
	case n == nil:
		if len(*c.table.Load()) >= c.cfg.MaxEntries && !c.gcLocked(now) {
			c.TableFull.Add(1)
			return packet.MAC{}, false, true
		}
		n = &neighbour{ip: ip, created: now}
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
		c.request(ip, packet.Broadcast)
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

// Input handles an ARP packet that arrived on the port's network. It
// answers requests for the port's own address and learns the sender of
// such requests, of replies and of gratuitous ARP (only updating entries
// that exist, like Linux with arp_accept=0, except for requests to us).
func (c *Cache) Input(a packet.ARP) {
	sender, target := a.SenderIP(), a.TargetIP()
	smac := a.SenderMAC()
	if smac.IsMulticast() || smac.IsZero() {
		return
	}
	forUs := target == c.ip
	switch {
	case a.Op() == packet.ARPRequest && forUs && sender != [4]byte{}:
		c.learn(sender, smac, true)
		c.reply(sender, smac)
	case a.Op() == packet.ARPRequest && forUs:
		c.reply(sender, smac) // an address probe (RFC 5227): answer, learn nothing
	case a.Op() == packet.ARPReply && forUs && sender != [4]byte{}: // 0.0.0.0 is no neighbour
		c.learn(sender, smac, true)
	case sender == target && sender != [4]byte{}:
		c.learn(sender, smac, false) // gratuitous ARP: update an existing entry
	}
}

func (c *Cache) learn(ip [4]byte, mac packet.MAC, create bool) {
	now := c.clock.Now()
	n := (*c.table.Load())[ip]
	if n == nil && !create {
		return
	}
	c.mu.Lock()
	n = (*c.table.Load())[ip]
	if n == nil {
		if len(*c.table.Load()) >= c.cfg.MaxEntries && !c.gcLocked(now) {
			c.mu.Unlock()
			c.TableFull.Add(1)
			return
		}
		n = &neighbour{ip: ip, created: now}
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

// Tick runs the timers: retransmits requests of incomplete entries, fails
// those out of probes (reporting their queued packets as unreachable),
// fails stale entries whose unicast probes went unanswered, and forgets
// failed entries after FailedTTL and unused stale ones after StaleTime. The datapath calls it every RetransTime
// or so.
func (c *Cache) Tick() {
	now := c.clock.Now()
	var unreachable []queued
	c.mu.Lock()
	for _, n := range *c.table.Load() {
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
			c.request(n.ip, packet.Broadcast)
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
func (c *Cache) gcLocked(now int64) bool {
	old := *c.table.Load()
	keep := func(n *neighbour) bool {
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
	t := make(map[[4]byte]*neighbour, len(old)-removed)
	for ip, n := range old {
		if keep(n) {
			t[ip] = n
		}
	}
	c.table.Store(&t)
	return true
}

// Forget removes ip's entry (its host is gone) and drops the frames queued
// for it.
func (c *Cache) Forget(ip [4]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.table.Load()
	if old[ip] == nil {
		return
	}
	t := make(map[[4]byte]*neighbour, len(old))
	for a, n := range old {
		if a != ip {
			t[a] = n
		}
	}
	c.table.Store(&t)
}

func (c *Cache) insertLocked(n *neighbour) {
	old := *c.table.Load()
	t := make(map[[4]byte]*neighbour, len(old)+1)
	for ip, m := range old {
		t[ip] = m
	}
	t[n.ip] = n
	c.table.Store(&t)
}

// request sends a who-has for ip, broadcast or (a stale probe) unicast.
// It and reply ignore Wire's error: a lost ARP frame is retried or times
// out, as one lost on a wire, and the egress that failed counts it.
func (c *Cache) request(ip [4]byte, to packet.MAC) {
	bp := c.bufs.Get().(*[]byte)
	c.out.Wire.WriteFrame(packet.PutARP(*bp, packet.ARPRequest, to, c.mac, c.ip, packet.MAC{}, ip), packet.Offload{})
	c.bufs.Put(bp)
}

func (c *Cache) reply(ip [4]byte, to packet.MAC) {
	bp := c.bufs.Get().(*[]byte)
	c.out.Wire.WriteFrame(packet.PutARP(*bp, packet.ARPReply, to, c.mac, c.ip, to, ip), packet.Offload{})
	c.bufs.Put(bp)
}

func macOf(v uint64) packet.MAC {
	return packet.MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
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
func (c *Cache) Entries() []Entry {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	t := *c.table.Load()
	out := make([]Entry, 0, len(t))
	ips := make([][4]byte, 0, len(t))
	for ip := range t {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return string(ips[i][:]) < string(ips[j][:]) })
	for _, ip := range ips {
		n := t[ip]
		st := State(n.state.Load())
		if st == Reachable && now-n.confirmed.Load() > int64(c.cfg.ReachableTime) {
			st = Stale
		}
		e := Entry{IP: netip.AddrFrom4(ip).String(), State: st, Age: time.Duration(now - n.confirmed.Load()), Queue: len(n.queue)}
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
