package vswitch

import (
	"cmp"
	"slices"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// Filter selects FDB rows for Each, as `bridge fdb show`'s brport and
// address options do. A zero field matches every row.
type Filter struct {
	Port string     // rows on this port
	MAC  packet.MAC // rows of this station (the zero MAC is never learned)
}

func (f *Filter) match(port string, m packet.MAC) bool {
	return (f.Port == "" || f.Port == port) && (f.MAC == packet.MAC{} || f.MAC == m)
}

// EachChunk is the most rows Each holds at once: its buffer, and the rows
// it sorts together.
const EachChunk = 4096

// Each calls fn for each live row that f selects (static, or learned and
// not expired), without building the whole table: it walks the table in
// place and hands rows over in chunks of up to EachChunk, each sorted by
// port then MAC, so a listing costs memory for a chunk, not for the
// table. A table of at most EachChunk selected rows is therefore listed
// sorted, as Entries lists it; a larger one comes chunk after chunk, in
// the table's order between chunks. Each takes no lock: rows learned or
// removed while it runs may or may not be listed. fn's error stops the
// walk and is returned; fn must not keep the *Entry.
func (s *Switch) Each(f Filter, fn func(*Entry) error) error {
	now := s.clock.Now()
	buf := make([]Entry, 0, EachChunk)
	flush := func() error {
		slices.SortFunc(buf, entryOrder)
		for i := range buf {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		buf = buf[:0]
		return nil
	}
	fdb := s.fdb.Load()
	for i := range fdb.slots {
		e := &fdb.slots[i]
		if e.key.Load() == 0 {
			continue
		}
		age := now - e.seen.Load()
		static := e.static()
		if !static && age > s.ageing {
			continue // expired; the next sweep removes it
		}
		p, m := e.port.Load().Name, e.mac()
		if !f.match(p, m) {
			continue
		}
		buf = append(buf, Entry{MAC: m, VLAN: e.vlan(), Port: p, Static: static, Age: time.Duration(age)})
		if len(buf) == EachChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// entryOrder sorts rows by port, then MAC.
func entryOrder(a, b Entry) int {
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return cmp.Compare(a.MAC.Uint64(), b.MAC.Uint64())
}
