package vswitch

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// fdbKey packs the VLAN id above the 48-bit MAC.
type fdbKey uint64

func keyOf(vlan uint16, m packet.MAC) fdbKey { return fdbKey(uint64(vlan)<<48 | m.Uint64()) }

// A slot's key word: 0 for an empty slot, else the fdbKey with usedBit set
// and staticBit for a static entry (the VLAN takes bits 48-59).
const (
	usedBit   = 1 << 63
	staticBit = 1 << 62
)

// slot is one FDB row, stored in the table itself so that finding a station
// and reading its port and age touch one cache line, not a map bucket and
// then a separately allocated entry. Every field is an atomic: readers use
// the table without a lock. A writer fills port and seen before publishing
// key, so a reader that sees the key sees the row.
type slot struct {
	key  atomic.Uint64
	port atomic.Pointer[Port]
	seen atomic.Int64
}

func (e *slot) fdbKey() fdbKey  { return fdbKey(e.key.Load() &^ (usedBit | staticBit)) }
func (e *slot) static() bool    { return e.key.Load()&staticBit != 0 }
func (e *slot) vlan() uint16    { return uint16(e.fdbKey() >> 48) }
func (e *slot) mac() packet.MAC { return packet.MACFromUint64(uint64(e.fdbKey())) }

// table is an open-addressing hash table (linear probing) of a power of two
// slots, at most three quarters full, so that every probe sequence ends at
// an empty slot. Readers find rows without a lock; rows are added in place
// under the switch's lock (a new MAC: O(1)), and the table is replaced by
// one twice the size when it would pass three quarters (so learning n MACs
// copies fewer than 2n rows in all) or rebuilt without the rows an ageing
// sweep or flush removes. A station's age and port change in place.
//
// A refresh (seen) written by a reader into a table that a grow has just
// replaced is lost; the station's next frame writes it in the new one.
// Moves take the lock, so they are never lost.
type table struct {
	slots []slot
	shift uint   // 64 - log2(len(slots)): the hash's top bits index
	mask  uint64 // len(slots) - 1
	seed  uint64 // per switch: MAC floods cannot aim at one probe chain
	n     int    // rows in use; under the switch's lock only
}

// minSlots is the smallest table.
const minSlots = 8

// newTable returns an empty table with room for n rows before it grows.
func newTable(n int, seed uint64) *table {
	size := minSlots
	for size*3 < n*4 {
		size *= 2
	}
	return sizedTable(size, seed)
}

// sizedTable returns an empty table of size slots, a power of two.
func sizedTable(size int, seed uint64) *table {
	return &table{slots: make([]slot, size), shift: uint(64 - bits.TrailingZeros(uint(size))), mask: uint64(size - 1), seed: seed}
}

func newSeed() uint64 { return rand.Uint64() }

// hash spreads k over the table (the 64-bit finalizer of MurmurHash3).
func (t *table) hash(k fdbKey) uint64 {
	x := uint64(k) ^ t.seed
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x >> t.shift
}

// find returns k's row, or nil. It takes no lock.
func (t *table) find(k fdbKey) *slot {
	want := uint64(k) | usedBit
	for i := t.hash(k); ; i = (i + 1) & t.mask {
		e := &t.slots[i]
		sk := e.key.Load()
		if sk&^staticBit == want {
			return e
		}
		if sk == 0 {
			return nil
		}
	}
}

// full reports whether one more row would pass three quarters.
func (t *table) full() bool { return (t.n+1)*4 > len(t.slots)*3 }

// put adds a row for k, which the table lacks and has room for (under the
// switch's lock).
func (t *table) put(k fdbKey, p *Port, static bool, seen int64) {
	i := t.hash(k)
	for t.slots[i].key.Load() != 0 {
		i = (i + 1) & t.mask
	}
	e := &t.slots[i]
	e.port.Store(p)
	e.seen.Store(seen)
	w := uint64(k) | usedBit
	if static {
		w |= staticBit
	}
	e.key.Store(w) // publishes the row
	t.n++
}

// rows calls f for each row in use.
func (t *table) rows(f func(*slot)) {
	for i := range t.slots {
		if e := &t.slots[i]; e.key.Load() != 0 {
			f(e)
		}
	}
}

// grown returns a table twice the size holding t's rows.
func (t *table) grown() *table {
	nt := sizedTable(2*len(t.slots), t.seed)
	t.rows(func(e *slot) { nt.put(e.fdbKey(), e.port.Load(), e.static(), e.seen.Load()) })
	return nt
}

// Entry is an FDB row as shown by `uswitch fdb`.
type Entry struct {
	MAC    packet.MAC    `json:"mac"`
	VLAN   uint16        `json:"vlan"`
	Port   string        `json:"port"`
	Static bool          `json:"static"`
	Age    time.Duration `json:"age_ns"`
}

// EventType says what happened to an FDB entry.
type EventType string

// FDB event types, as `bridge monitor fdb` would report them.
const (
	Learned EventType = "learned"
	Moved   EventType = "moved"
	Aged    EventType = "aged"
	Flushed EventType = "flushed"
)

// Event is one FDB change, delivered to subscribers.
type Event struct {
	Type    EventType  `json:"event"`
	Network string     `json:"network"`
	MAC     packet.MAC `json:"mac"`
	VLAN    uint16     `json:"vlan"`
	Port    string     `json:"port"`
	From    string     `json:"from,omitempty"` // previous port of a move
	Time    time.Time  `json:"time"`
}
