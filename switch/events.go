package vswitch

import (
	"sync"
	"sync/atomic"
	"time"
)

// subscriberBuffer is how many events a slow subscriber may fall behind
// before its events are dropped.
const subscriberBuffer = 256

// subscribers fans FDB events out. Events happen on learning, moves and
// ageing, never on the per-frame path of known stations.
type subscribers struct {
	mu      sync.Mutex
	chans   map[chan Event]struct{}
	n       atomic.Int32
	Dropped atomic.Uint64
}

func (s *subscribers) add() (<-chan Event, func()) {
	c := make(chan Event, subscriberBuffer)
	s.mu.Lock()
	if s.chans == nil {
		s.chans = map[chan Event]struct{}{}
	}
	s.chans[c] = struct{}{}
	s.n.Add(1)
	s.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.chans, c)
			s.n.Add(-1)
			s.mu.Unlock()
		})
	}
}

func (s *subscribers) publish(e Event) {
	if s.n.Load() == 0 {
		return
	}
	e.Time = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.chans {
		select {
		case c <- e:
		default:
			s.Dropped.Add(1)
		}
	}
}
