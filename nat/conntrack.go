package nat

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

// TCP connection states, as nf_conntrack names them.
type TCPState uint8

// TCP states; the order is the column order of the transition table.
const (
	tcpNone TCPState = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2
	numTCPStates
	tcpInvalid // a packet the state machine refuses
	tcpIgnore  // a packet that changes nothing
)

var tcpNames = [numTCPStates]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func (s TCPState) String() string {
	if s < numTCPStates {
		return tcpNames[s]
	}
	return "?"
}

// Linux's default timeouts (nf_conntrack_tcp_timeout_*, udp, icmp, generic).
var tcpTimeouts = [numTCPStates]time.Duration{
	tcpNone:        2 * time.Minute,
	TCPSynSent:     2 * time.Minute,
	TCPSynRecv:     time.Minute,
	TCPEstablished: 5 * 24 * time.Hour,
	TCPFinWait:     2 * time.Minute,
	TCPCloseWait:   time.Minute,
	TCPLastAck:     30 * time.Second,
	TCPTimeWait:    2 * time.Minute,
	TCPClose:       10 * time.Second,
	TCPSynSent2:    2 * time.Minute,
}

const (
	udpTimeout       = 30 * time.Second
	udpStreamTimeout = 2 * time.Minute
	icmpTimeout      = 30 * time.Second
	genericTimeout   = 10 * time.Minute
)

// tcpFlagClass is the row of the transition table a segment selects.
type tcpFlagClass uint8

const (
	tcpSyn tcpFlagClass = iota
	tcpSynAck
	tcpFin
	tcpAck
	tcpRst
	tcpNoFlags
)

func classify(flags uint8) tcpFlagClass {
	switch {
	case flags&packet.TCPRst != 0:
		return tcpRst
	case flags&packet.TCPSyn != 0 && flags&packet.TCPAck != 0:
		return tcpSynAck
	case flags&packet.TCPSyn != 0:
		return tcpSyn
	case flags&packet.TCPFin != 0:
		return tcpFin
	case flags&packet.TCPAck != 0:
		return tcpAck
	}
	return tcpNoFlags
}

// tcpTransitions is nf_conntrack_proto_tcp.c's tcp_conntracks table:
// [direction][flag class][current state] -> next state.
var tcpTransitions = func() (t [2][6][numTCPStates]TCPState) {
	const (
		sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 = tcpNone, TCPSynSent, TCPSynRecv, TCPEstablished, TCPFinWait, TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose, TCPSynSent2
		sIV, sIG                                         = tcpInvalid, tcpIgnore
	)
	t[Original] = [6][numTCPStates]TCPState{
		//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		tcpSyn:     {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		tcpSynAck:  {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		tcpFin:     {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		tcpAck:     {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		tcpRst:     {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		tcpNoFlags: {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	}
	t[Reply] = [6][numTCPStates]TCPState{
		//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		tcpSyn:     {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		tcpSynAck:  {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		tcpFin:     {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		tcpAck:     {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		tcpRst:     {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		tcpNoFlags: {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	}
	return t
}()

// Dir is the direction of a packet within its connection.
type Dir uint8

// Directions.
const (
	Original Dir = iota // as the connection's first packet went
	Reply
)

// NAT kinds applied to a connection.
const (
	natSrc uint8 = 1 << iota
	natDst
)

// Conn is one tracked connection.
type Conn struct {
	orig, reply Tuple // reply: how reply packets look, after NAT
	nat         uint8
	tcp         atomic.Uint32 // TCPState
	replied     atomic.Bool   // a reply was seen (IPS_SEEN_REPLY)
	assured     atomic.Bool   // IPS_ASSURED: a reply, and for TCP a completed handshake; early drop spares it
	expires     atomic.Int64  // clock time
	packets     [2]atomic.Uint64
	bytes       [2]atomic.Uint64
	dead        atomic.Bool // removed from the table
	links       [2]link     // its entries in the table's index: orig, reply
	targets     [2]Tuple    // what target returns, set on insert
	// six holds an IPv6 connection's tuples; orig, reply and targets
	// then hold only its ports and protocol (see Tuple6.ports).
	six *conn6
}

// conn6 is what an IPv6 connection holds beyond a Conn.
type conn6 struct {
	orig, reply Tuple6
	targets     [2]Tuple6
}

// newConn6 returns an IPv6 connection with tuple orig, allocated with its
// conn6 at once.
func newConn6(orig Tuple6) *Conn {
	c := &struct {
		Conn
		six conn6
	}{}
	c.Conn.six = &c.six
	c.orig, c.six.orig = orig.ports(), orig
	return &c.Conn
}

// target6 is what an IPv6 packet travelling in dir is rewritten to.
func (c *Conn) target6(d Dir) *Tuple6 { return &c.six.targets[d] }

// target is what a packet travelling in dir is rewritten to: the reverse of
// the other direction's tuple.
func (c *Conn) target(d Dir) Tuple { return c.targets[d] }

// timeout is how long the connection lives without packets in its state.
func (c *Conn) timeout() time.Duration {
	switch c.orig.Proto {
	case packet.ProtoTCP:
		return tcpTimeouts[c.tcp.Load()]
	case packet.ProtoUDP:
		if c.replied.Load() {
			return udpStreamTimeout
		}
		return udpTimeout
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return icmpTimeout
	}
	return genericTimeout
}

// Table is the connection table: both tuples of every connection, in
// shards so goroutines forwarding different flows rarely meet on a lock.
type Table struct {
	shards [numShards]shard
	clock  clock.Clock
	max    int
	count  atomic.Int64
	sweep  atomic.Uint32 // next shard the incremental sweep visits
	seed   uint64        // keys the shard hash
	seed6  uint64        // keys the fold of IPv6 addresses into a key

	// Counters, as `conntrack -S` shows them: Dropped counts new
	// connections a full table refused, InsertFailed those whose
	// translated tuple could not be made unique, Reopened the connections a
	// SYN replaced in TIME_WAIT or CLOSE.
	Inserted, EarlyDropped, Dropped, Expired, InsertFailed, Reopened atomic.Uint64
}

const numShards = 256

// key packs a tuple into 16 bytes without padding. An IPv6 tuple's key
// (keyV6 set in rest) holds its addresses folded by a keyed hash: equal
// keys then say equal tuples only once the tuples compare equal too (see
// shard.get).
type key struct{ addrs, rest uint64 }

const keyV6 = 1 << 63

func (k key) v6() bool { return k.rest&keyV6 != 0 }

// key4 is t's key in a table.
func key4(t Tuple) key {
	return key{
		addrs: packet.PairOf(t.Src, t.Dst),
		rest:  uint64(t.Sport)<<24 | uint64(t.Dport)<<8 | uint64(t.Proto),
	}
}

// NewTable returns an empty table holding at most max connections.
func NewTable(max int, clk clock.Clock) *Table {
	t := &Table{clock: clk, max: max, seed: rand.Uint64(), seed6: rand.Uint64()}
	for i := range t.shards {
		t.shards[i].idx.Store(newIndex(minSlots))
	}
	return t
}

// shardOf picks a key's shard by a hash keyed by the table's random seed,
// so nobody outside can aim flows at one shard.
func (t *Table) shardOf(hash uint64) *shard { return &t.shards[hash>>56] }

// Lookup finds the live connection of a packet with tuple tup and the
// packet's direction in it. It takes no lock.
func (t *Table) Lookup(tup Tuple) (*Conn, Dir, bool) { return t.lookup(key4(tup), nil) }

// Lookup6 is Lookup for an IPv6 tuple.
func (t *Table) Lookup6(tup *Tuple6) (*Conn, Dir, bool) { return t.lookup(key6(tup, t.seed6), tup) }

// lookup finds the connection of key k (of IPv6 tuple t6, for an IPv6 key).
func (t *Table) lookup(k key, t6 *Tuple6) (*Conn, Dir, bool) {
	h := k.hash(t.seed)
	var l *link
	if t6 == nil {
		l = t.shardOf(h).get(k, h)
	} else {
		l = t.shardOf(h).get6(k, h, t6)
	}
	if l == nil {
		return nil, 0, false
	}
	c := l.c
	if c.expires.Load() < t.clock.Now() || c.dead.Load() {
		return nil, 0, false
	}
	if l == &c.links[Original] {
		return c, Original, true
	}
	return c, Reply, true
}

// taken reports whether a live connection owns tuple k.
func (t *Table) taken(k Tuple) bool {
	_, _, ok := t.Lookup(k)
	return ok
}

// insert adds c under both tuples. When the table is full it first drops
// an unreplied connection (early drop); if there is none, c is refused.
func (t *Table) insert(c *Conn) bool {
	if t.max > 0 && t.count.Load() >= int64(t.max) && !t.earlyDrop() {
		t.Dropped.Add(1)
		return false
	}
	c.expires.Store(t.clock.Now() + int64(c.timeout()))
	c.setTargets()
	for i, k := range t.keys(c) {
		c.links[i] = link{k: k, hash: k.hash(t.seed), c: c}
	}
	for i := range c.links {
		s := t.shardOf(c.links[i].hash)
		s.mu.Lock()
		old := s.put(&c.links[i])
		s.mu.Unlock()
		if old != nil && old != c {
			// Unlinked with no shard lock held: its other tuple may be in
			// a shard another insert holds while waiting for this one.
			t.remove(old)
		}
	}
	t.count.Add(1)
	t.Inserted.Add(1)
	return true
}

// remove unlinks c and reports whether this call did: a connection whose
// two tuples share a shard is seen twice by a sweep but removed once.
func (t *Table) remove(c *Conn) bool {
	if !c.dead.CompareAndSwap(false, true) {
		return false
	}
	t.count.Add(-1)
	for i := range c.links {
		l := &c.links[i]
		s := t.shardOf(l.hash)
		s.mu.Lock()
		s.del(l)
		s.mu.Unlock()
	}
	return true
}

// earlyDrop removes one connection that expired but was not swept yet or
// that is not assured (no reply, or a TCP handshake not completed: a SYN
// flood's SYN_RECV entries), looking through a few shards from a moving
// start, like Linux's early_drop. When those shards hold none, it takes a
// TCP connection that is closing (TIME_WAIT and the like), as Linux's
// conntrack GC does when the table is nearly full (tcp_can_early_drop), so
// a table full of closed connections still takes new ones.
func (t *Table) earlyDrop() bool {
	start := t.sweep.Add(1)
	now := t.clock.Now()
	var closing *Conn
	for i := range uint32(16) {
		s := &t.shards[(start+i)%numShards]
		var victim *Conn
		s.mu.Lock()
		s.each(func(c *Conn) bool {
			if !c.assured.Load() || c.expires.Load() < now {
				victim = c
				return false
			}
			if closing == nil && c.closing() {
				closing = c
			}
			return true
		})
		s.mu.Unlock()
		if victim != nil && t.remove(victim) {
			if victim.expires.Load() < now {
				t.Expired.Add(1)
			} else {
				t.EarlyDropped.Add(1)
			}
			return true
		}
	}
	if closing != nil && t.remove(closing) {
		t.EarlyDropped.Add(1)
		return true
	}
	return false
}

// closing reports whether c is a TCP connection on its way out: FIN_WAIT,
// CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE (Linux's tcp_can_early_drop).
func (c *Conn) closing() bool {
	if c.orig.Proto != packet.ProtoTCP {
		return false
	}
	switch TCPState(c.tcp.Load()) {
	case TCPFinWait, TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose:
		return true
	}
	return false
}

// Sweep removes expired connections from n shards, continuing where the
// previous call stopped: the datapath calls it on every tick so the whole
// table is visited every numShards/n ticks, never all at once.
func (t *Table) Sweep(n int) {
	now := t.clock.Now()
	for range n {
		s := &t.shards[t.sweep.Add(1)%numShards]
		var gone []*Conn
		s.mu.Lock()
		s.each(func(c *Conn) bool {
			if c.expires.Load() < now {
				gone = append(gone, c)
			}
			return true
		})
		s.mu.Unlock()
		for _, c := range gone {
			if t.remove(c) {
				t.Expired.Add(1)
			}
		}
	}
}

// RemoveAddr removes every connection that has addr in one of its tuples
// (the endpoint that had it is gone, so are its connections and NAT
// mappings) and returns how many it removed.
func (t *Table) RemoveAddr(addr [4]byte) int {
	return t.removeIf(func(c *Conn) bool {
		return c.six == nil && (c.orig.Src == addr || c.orig.Dst == addr || c.reply.Src == addr || c.reply.Dst == addr)
	})
}

// RemoveAddr6 is RemoveAddr for an IPv6 address.
func (t *Table) RemoveAddr6(addr [16]byte) int {
	return t.removeIf(func(c *Conn) bool {
		six := c.six
		return six != nil && (six.orig.Src == addr || six.orig.Dst == addr || six.reply.Src == addr || six.reply.Dst == addr)
	})
}

// removeIf removes the connections gone selects and returns how many.
func (t *Table) removeIf(gone func(*Conn) bool) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		var list []*Conn
		s.mu.Lock()
		s.each(func(c *Conn) bool {
			if gone(c) {
				list = append(list, c)
			}
			return true
		})
		s.mu.Unlock()
		for _, c := range list {
			if t.remove(c) {
				n++
			}
		}
	}
	return n
}

// Len is the number of connections.
func (t *Table) Len() int { return int(t.count.Load()) }

// Entry is a connection as `uswitch conntrack` shows it, like conntrack -L.
type Entry struct {
	Family  string         `json:"family"` // ipv4 or ipv6, as conntrack -L's first column
	Proto   string         `json:"proto"`
	State   string         `json:"state,omitempty"` // TCP only
	Orig    TupleView      `json:"original"`
	Reply   TupleView      `json:"reply"`
	SNAT    bool           `json:"snat"`
	DNAT    bool           `json:"dnat"`
	Replied bool           `json:"replied"` // a reply was seen; conntrack -L says [UNREPLIED] until then
	Assured bool           `json:"assured"`
	Timeout clock.Duration `json:"timeout"` // "117s" in JSON
	Packets [2]uint64      `json:"packets"` // original, reply
	Bytes   [2]uint64      `json:"bytes"`
}

// TupleView is a tuple for JSON.
type TupleView struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	Sport uint16     `json:"sport"`
	Dport uint16     `json:"dport"`
}

// views are c's tuples for listings: original, reply.
func (c *Conn) views() (TupleView, TupleView) {
	if c.six != nil {
		return c.six.orig.view(), c.six.reply.view()
	}
	return c.orig.view(), c.reply.view()
}

// origAddrs are the addresses of c's original tuple.
func (c *Conn) origAddrs() (src, dst netip.Addr) {
	if c.six != nil {
		return netip.AddrFrom16(c.six.orig.Src), netip.AddrFrom16(c.six.orig.Dst)
	}
	return netip.AddrFrom4(c.orig.Src), netip.AddrFrom4(c.orig.Dst)
}

// Entries lists the live connections, sorted by original tuple. It holds
// the whole table in memory: the API streams with Each instead.
func (t *Table) Entries() []Entry {
	out := []Entry{}
	_ = t.Each(Filter{}, func(e *Entry) error {
		out = append(out, *e)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return less(&out[i], &out[j]) })
	return out
}

// Filter selects connections by their family, original tuple and state,
// as `conntrack -L` does with -f, -p, -s, -d, --sport, --dport and
// --state; a zero
// field matches every connection.
type Filter struct {
	Family       string // "ipv4" or "ipv6"
	Proto        uint8
	Src, Dst     netip.Addr
	Sport, Dport uint16
	State        string // a TCP state's name (only TCP connections have one)
}

func (f *Filter) match(c *Conn) bool {
	o := &c.orig
	switch {
	case f.Proto != 0 && o.Proto != f.Proto,
		f.Sport != 0 && o.Sport != f.Sport,
		f.Dport != 0 && o.Dport != f.Dport,
		f.Family == "ipv4" && c.six != nil, f.Family == "ipv6" && c.six == nil:
		return false
	}
	if f.Src.IsValid() || f.Dst.IsValid() {
		src, dst := c.origAddrs()
		if f.Src.IsValid() && f.Src.Unmap() != src || f.Dst.IsValid() && f.Dst.Unmap() != dst {
			return false
		}
	}
	return f.State == "" || o.Proto == packet.ProtoTCP && TCPState(c.tcp.Load()).String() == f.State
}

// Each calls fn with every live connection f selects, in no particular
// order, until fn returns an error, which it returns. It copies one shard
// at a time (a 256th of the table) and calls fn with no lock held, so a
// listing of any size costs memory for one shard, not for the table, and
// never holds up forwarding while fn writes. The *Entry is reused.
func (t *Table) Each(f Filter, fn func(*Entry) error) error {
	var buf []Entry
	for i := range t.shards {
		s := &t.shards[i]
		now := t.clock.Now()
		buf = buf[:0]
		s.mu.Lock()
		s.eachLink(func(l *link) bool {
			c := l.c
			// a connection is listed from its original tuple's link only,
			// so once, whichever shards its two tuples are in
			if l != &c.links[Original] || c.dead.Load() || c.expires.Load() < now || !f.match(c) {
				return true
			}
			buf = append(buf, c.entry(now))
			return true
		})
		s.mu.Unlock()
		for j := range buf {
			if err := fn(&buf[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// entry is c as listings show it, at time now.
func (c *Conn) entry(now int64) Entry {
	e := Entry{Family: "ipv4", Proto: protoName(c.orig.Proto),
		SNAT: c.nat&natSrc != 0, DNAT: c.nat&natDst != 0, Replied: c.replied.Load(), Assured: c.assured.Load(),
		Timeout: clock.Duration(c.expires.Load() - now)}
	e.Orig, e.Reply = c.views()
	if c.six != nil {
		e.Family = "ipv6"
	}
	if c.orig.Proto == packet.ProtoTCP {
		e.State = TCPState(c.tcp.Load()).String()
	}
	for d := range 2 {
		e.Packets[d], e.Bytes[d] = c.packets[d].Load(), c.bytes[d].Load()
	}
	return e
}

// less orders listings by family (IPv4 first), protocol, then original
// tuple.
func less(a, b *Entry) bool {
	if a.Family != b.Family {
		return a.Family < b.Family
	}
	if a.Proto != b.Proto {
		return a.Proto < b.Proto
	}
	if c := a.Orig.Src.Compare(b.Orig.Src); c != 0 {
		return c < 0
	}
	if c := a.Orig.Dst.Compare(b.Orig.Dst); c != 0 {
		return c < 0
	}
	if a.Orig.Sport != b.Orig.Sport {
		return a.Orig.Sport < b.Orig.Sport
	}
	return a.Orig.Dport < b.Orig.Dport
}
