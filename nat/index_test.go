package nat

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
)

func udpConn(src byte, sport uint16) *Conn {
	orig := Tuple{Src: [4]byte{10, 0, 0, src}, Dst: [4]byte{192, 0, 2, 1}, Sport: sport, Dport: 53, Proto: 17}
	return &Conn{orig: orig, reply: orig.Reverse()}
}

// Connections that stay are always found, with their direction, while
// others come and go around them and the shards' indexes grow, fill with
// tombstones, rebuild and shrink: readers take no lock.
func TestIndexLookupsDuringChurn(t *testing.T) {
	clk := &clock.Fake{}
	tb := NewTable(0, clk)
	var stay []*Conn
	for i := range 2000 {
		c := udpConn(1, uint16(i))
		require.True(t, tb.insert(c))
		stay = append(stay, c)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				for _, c := range stay {
					got, d, ok := tb.Lookup(c.orig)
					if !ok || got != c || d != Original {
						t.Errorf("lost %v", c.orig)
						return
					}
					if got, d, ok := tb.Lookup(c.reply); !ok || got != c || d != Reply {
						t.Errorf("lost reply %v", c.reply)
						return
					}
				}
			}
		})
	}
	for round := range 20 {
		var churn []*Conn
		for i := range 5000 {
			c := udpConn(byte(2+round), uint16(i))
			require.True(t, tb.insert(c))
			churn = append(churn, c)
		}
		for _, c := range churn {
			require.True(t, tb.remove(c))
		}
	}
	stop.Store(true)
	wg.Wait()
	require.Equal(t, 2000, tb.Len())
	for _, c := range stay {
		tb.remove(c)
	}
	for i := range tb.shards {
		s := &tb.shards[i]
		require.Zero(t, s.live)
		require.LessOrEqual(t, len(s.idx.Load().slots), 4*minSlots, "shard %d shrank", i)
	}
}

// A tuple inserted again replaces the connection it indexed; removing the
// old one then leaves the new one in place.
func TestIndexReplace(t *testing.T) {
	tb := NewTable(0, &clock.Fake{})
	a, b := udpConn(1, 1), udpConn(1, 1)
	require.True(t, tb.insert(a))
	require.True(t, tb.insert(b))
	require.True(t, a.dead.Load(), "the old connection was unlinked")
	got, _, ok := tb.Lookup(b.orig)
	require.True(t, ok)
	require.Same(t, b, got)
	require.False(t, tb.remove(a))
	got, _, ok = tb.Lookup(b.reply)
	require.True(t, ok)
	require.Same(t, b, got)
	require.Equal(t, 1, tb.Len())
}
