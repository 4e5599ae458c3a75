package nat

import (
	"sync"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// IPv6 fragments: the first fragment of a datagram holds its transport
// header and is tracked by it; frags6 remembers, by the datagram's
// addresses and fragment ID as they arrive, which connection and
// direction it went in, so that the later fragments (no transport header)
// follow it. Fragments are rare: a map under a mutex, bounded, its
// entries living as long as Linux keeps fragments waiting (ip6frag_time).

// Flow.frag values.
const (
	fragFirst uint8 = 1 + iota // the first fragment of a datagram, more to come
	fragLater                  // a later fragment, following its first one's connection
)

const (
	fragTimeout = 60 * time.Second
	maxFrags    = 4096
)

type fragKey struct {
	src, dst [16]byte
	id       uint32
}

type fragEntry struct {
	c       *Conn
	d       Dir
	expires int64
}

type frags6 struct {
	mu sync.Mutex
	m  map[fragKey]fragEntry
}

// firstFragment records, for a first fragment, the connection c and
// direction d its datagram's later fragments follow (a dry trace records
// nothing).
func (t *Tracker) firstFragment(f *Flow, c *Conn, d Dir) {
	if f.frag != fragFirst || f.Rec != nil && f.Rec.Dry {
		return
	}
	now := t.clock.Now()
	k := fragKey{src: f.orig6.Src, dst: f.orig6.Dst, id: f.fragID}
	fr := &t.frags6
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.m == nil {
		fr.m = make(map[fragKey]fragEntry)
	}
	if len(fr.m) >= maxFrags {
		for k, e := range fr.m {
			if e.expires < now {
				delete(fr.m, k)
			}
		}
		if len(fr.m) >= maxFrags {
			return // its later fragments will be INVALID, as when reassembly memory runs out
		}
	}
	fr.m[k] = fragEntry{c: c, d: d, expires: now + int64(fragTimeout)}
}

// laterFragment runs prerouting for a fragment but the first (ID id): when
// its datagram's first fragment was tracked, the fragment belongs to that
// connection, in that direction, and gets its destination translation;
// ok is false when there is none (the caller makes it INVALID).
func (t *Tracker) laterFragment(f *Flow, ip packet.IPv6, id uint32) (v Verdict, ok bool) {
	now := t.clock.Now()
	fr := &t.frags6
	fr.mu.Lock()
	e, ok := fr.m[fragKey{src: f.orig6.Src, dst: f.orig6.Dst, id: id}]
	fr.mu.Unlock()
	c := e.c
	if !ok || e.expires < now || c.dead.Load() || c.expires.Load() < now {
		return v, false
	}
	st := StateNew
	if e.d == Reply || c.replied.Load() {
		st = StateEstablished
	}
	if f.Rec == nil || !f.Rec.Dry {
		c.packets[e.d].Add(1)
		c.bytes[e.d].Add(uint64(len(ip)))
	}
	f.found(c, e.d, st)
	f.frag = fragLater
	if f.Rec != nil {
		f.traceFound()
	}
	if v = t.Rules.filterVerdict(Prerouting, &f.meta, f.Rec); v.Action == Accept && c.nat != 0 {
		tg := c.target6(e.d)
		ip.SetDst(tg.Dst)
		f.meta.Dst6 = tg.Dst
	}
	return v, true
}
