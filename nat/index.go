package nat

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// shard is one part of the connection table: an open-addressing hash index
// from tuple keys to connections that readers search without a lock or an
// atomic write, so that looking up an established flow costs a hash and a
// few loads. Writers (insert, remove, sweep) hold mu. Slots only ever go
// from empty to a link, from a link to a tombstone and from a tombstone to
// a link, so a reader's probe chain is never cut; growing or shrinking
// builds a new index and publishes it whole. A reader still on the old one
// may see a connection removed since, which Lookup tells by Conn.dead.
type shard struct {
	mu   sync.Mutex
	idx  atomic.Pointer[index]
	live int // links in idx, under mu
	used int // links and tombstones in idx, under mu
	_    [32]byte
}

// link is one of a connection's two entries: the key it is indexed under.
// Both live inside the Conn, so indexing allocates nothing.
type link struct {
	k    key
	hash uint64 // k.hash of the table's seed
	c    *Conn
}

// tombstone marks a slot whose link was removed; probes go past it.
var tombstone = &link{}

type index struct {
	mask  uint64
	slots []atomic.Pointer[link]
}

const minSlots = 16

func newIndex(n int) *index {
	return &index{mask: uint64(n - 1), slots: make([]atomic.Pointer[link], n)}
}

// hash mixes a key with the table's seed. Its top 8 bits pick the shard,
// the bits below them the first slot probed.
func (k key) hash(seed uint64) uint64 {
	return ((k.addrs ^ seed ^ k.rest*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9) ^ k.rest>>7
}

func (h *index) start(hash uint64) uint64 { return (hash >> 24) & h.mask }

// get returns the link indexed under IPv4 key k, or nil. It takes no
// lock. (Small enough to be inlined into the IPv4 path: get6 is apart.)
func (s *shard) get(k key, hash uint64) *link {
	idx := s.idx.Load()
	i := idx.start(hash)
	for range idx.slots {
		l := idx.slots[i].Load()
		if l == nil {
			return nil
		}
		if l != tombstone && l.k == k {
			return l
		}
		i = (i + 1) & idx.mask
	}
	return nil
}

// get6 is get for an IPv6 key, which stands for its tuple t6 folded: a
// link is the one looked for when its connection's tuple is t6 too.
func (s *shard) get6(k key, hash uint64, t6 *Tuple6) *link {
	idx := s.idx.Load()
	for i, n := idx.start(hash), 0; n < len(idx.slots); i, n = (i+1)&idx.mask, n+1 {
		switch l := idx.slots[i].Load(); {
		case l == nil:
			return nil
		case l != tombstone && l.k == k && sameAddrs6(l.tuple6(), t6):
			return l
		}
	}
	return nil
}

// sameAddrs6 reports whether t and o have the same addresses: all that
// tuples under equal keys may differ by, since a key holds the ports and
// protocol as they are (four word compares, no call to compare 37 bytes).
func sameAddrs6(t, o *Tuple6) bool { return t.Src == o.Src && t.Dst == o.Dst }

// same reports whether two links with equal keys stand for the same
// tuple: always for IPv4, whose keys are the tuples.
func (l *link) same(o *link) bool { return !l.k.v6() || *l.tuple6() == *o.tuple6() }

// tuple6 is the IPv6 tuple of an IPv6 connection's link.
func (l *link) tuple6() *Tuple6 {
	if l == &l.c.links[Original] {
		return &l.c.six.orig
	}
	return &l.c.six.reply
}

// put indexes l, replacing and returning the connection indexed under the
// same key, if any. s.mu is held.
func (s *shard) put(l *link) *Conn {
	idx := s.idx.Load()
	if (s.used+1)*2 > len(idx.slots) {
		idx = s.rebuild(s.live + 1)
	}
	i := idx.start(l.hash)
	free := -1
	for range idx.slots {
		cur := idx.slots[i].Load()
		switch {
		case cur == nil:
			if free < 0 {
				free = int(i)
				s.used++
			}
			idx.slots[free].Store(l)
			s.live++
			return nil
		case cur == tombstone:
			if free < 0 {
				free = int(i)
			}
		case cur.k == l.k && cur.same(l):
			idx.slots[i].Store(l)
			return cur.c
		}
		i = (i + 1) & idx.mask
	}
	panic("nat: connection index full") // unreachable: rebuild keeps it half empty
}

// del removes link l, if the index holds it (another connection may
// have replaced it under its key). s.mu is held.
func (s *shard) del(l *link) {
	idx := s.idx.Load()
	i := idx.start(l.hash)
	for range idx.slots {
		cur := idx.slots[i].Load()
		if cur == nil {
			return
		}
		if cur == l {
			idx.slots[i].Store(tombstone)
			s.live--
			if s.live*8 < len(idx.slots) && len(idx.slots) > 4*minSlots {
				s.rebuild(s.live)
			}
			return
		}
		i = (i + 1) & idx.mask
	}
}

// rebuild publishes a new index for n links, at most a quarter full, with
// the current links and no tombstones. s.mu is held.
func (s *shard) rebuild(n int) *index {
	size := max(minSlots, 1<<bits.Len(uint(n*4-1)))
	old, idx := s.idx.Load(), newIndex(size)
	for j := range old.slots {
		l := old.slots[j].Load()
		if l == nil || l == tombstone {
			continue
		}
		i := idx.start(l.hash)
		for idx.slots[i].Load() != nil {
			i = (i + 1) & idx.mask
		}
		idx.slots[i].Store(l)
	}
	s.used = s.live
	s.idx.Store(idx)
	return idx
}

// eachLink calls fn with every link until fn returns false. s.mu is held.
func (s *shard) eachLink(fn func(*link) bool) {
	idx := s.idx.Load()
	for j := range idx.slots {
		l := idx.slots[j].Load()
		if l != nil && l != tombstone && !fn(l) {
			return
		}
	}
}

// each calls fn with the connection of every link until fn returns false.
// A connection whose two keys share the shard is seen twice. s.mu is held.
func (s *shard) each(fn func(*Conn) bool) {
	idx := s.idx.Load()
	for j := range idx.slots {
		l := idx.slots[j].Load()
		if l != nil && l != tombstone && !fn(l.c) {
			return
		}
	}
}
