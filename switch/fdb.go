package vswitch

import (
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// fdbKey packs the VLAN id above the 48-bit MAC.
type fdbKey uint64

func keyOf(vlan uint16, m packet.MAC) fdbKey { return fdbKey(uint64(vlan)<<48 | m.Uint64()) }

// foldSize bounds the copying a new MAC costs: up to it the settled map is
// copied per new MAC; beyond it, new MACs go to a recent map of at most
// foldSize entries, folded into the settled map when full. Filling a table
// of n entries so copies about n*foldSize/2 + n²/(2*foldSize) entries
// instead of n²/2: a MAC flood cannot make learning quadratic in fdb_max.
const foldSize = 128

// entry is one FDB row. Its port and last-seen time change in place
// (station move, refresh) so the common case never copies the table.
type entry struct {
	mac    packet.MAC
	vlan   uint16
	static bool
	port   atomic.Pointer[Port]
	seen   atomic.Int64
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
