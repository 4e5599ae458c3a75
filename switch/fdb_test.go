package vswitch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

// TestLargeFDB exercises a table that grew several times while learning:
// lookups, moves, static pins, ageing and flushes must find rows learned
// before and after each grow.
func TestLargeFDB(t *testing.T) {
	r := newRig(t, 3, Config{Ageing: 10 * time.Second})
	const n = 1000
	for i := range n {
		r.sw.Input(r.ports[1+i%2], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
	}
	r.delivered()
	require.Len(t, r.sw.Entries(), n)
	require.Equal(t, n, r.sw.Len())
	tab := r.sw.fdb.Load()
	require.Equal(t, n, tab.n)
	require.GreaterOrEqual(t, len(tab.slots)*3, n*4, "at most three quarters full")
	inRecent := floodMAC(n - 1) // the last learned (odd: on c)
	inMain := floodMAC(0)       // the first learned, copied by every grow (even: on b)
	require.NotNil(t, tab.find(keyOf(0, inRecent)))
	require.NotNil(t, tab.find(keyOf(0, inMain)))
	require.Nil(t, tab.find(keyOf(0, floodMAC(n))))

	// Known unicast to either goes to one port only.
	r.sw.Input(r.ports[0], frame(t, mac(1), inRecent), packet.Offload{})
	require.Equal(t, []int{0, 0, 1}, r.delivered())
	r.sw.Input(r.ports[0], frame(t, mac(1), inMain), packet.Offload{})
	require.Equal(t, []int{0, 1, 0}, r.delivered())

	// A station moves.
	events, cancel := r.sw.Subscribe()
	defer cancel()
	r.sw.Input(r.ports[1], frame(t, inRecent, packet.Broadcast), packet.Offload{})
	ev := <-events
	require.Equal(t, Moved, ev.Type)
	require.Equal(t, "b", ev.Port)
	r.delivered()
	r.sw.Input(r.ports[0], frame(t, mac(1), inRecent), packet.Offload{})
	require.Equal(t, []int{0, 1, 0}, r.delivered())

	// A static pin replaces a learned entry wherever it is.
	pinned := floodMAC(n - 2)
	require.NoError(t, r.sw.AddStatic(0, pinned, r.ports[2]))
	r.sw.Input(r.ports[1], frame(t, pinned, packet.Broadcast), packet.Offload{}) // does not move it
	r.delivered()
	r.sw.Input(r.ports[0], frame(t, mac(1), pinned), packet.Offload{})
	require.Equal(t, []int{0, 0, 1}, r.delivered())

	// Ageing: only what was refreshed (and the static pin) survives, and
	// the sweep shrinks the table.
	r.clk.Advance(9 * time.Second)
	for _, m := range []packet.MAC{inMain, inRecent} {
		r.sw.Input(r.ports[1], frame(t, m, packet.Broadcast), packet.Offload{})
	}
	r.clk.Advance(2 * time.Second)
	// Expired but not yet swept: neither listed nor counted.
	require.Len(t, r.sw.Entries(), 3)
	require.Equal(t, 3, r.sw.Len())
	r.sw.Expire()
	require.Equal(t, 3, r.sw.fdb.Load().n)
	require.Equal(t, minSlots, len(r.sw.fdb.Load().slots))
	got := map[packet.MAC]string{}
	for _, e := range r.sw.Entries() {
		got[e.MAC] = e.Port
	}
	// mac(1) was learned on a at the start, not refreshed since.
	require.Equal(t, map[packet.MAC]string{inMain: "b", inRecent: "b", pinned: "c"}, got)

	// Relearning past several grows and flushing a port removes its rows.
	for i := range n {
		r.sw.Input(r.ports[2], frame(t, floodMAC(n+i), packet.Broadcast), packet.Offload{})
	}
	require.Len(t, r.sw.Entries(), n+3)
	r.sw.RemovePort(r.ports[2])
	got = map[packet.MAC]string{}
	for _, e := range r.sw.Entries() {
		got[e.MAC] = e.Port
	}
	require.Equal(t, map[packet.MAC]string{inMain: "b", inRecent: "b"}, got)
}

// TestLargeFDBMaxEntries: fdb_max holds across grows.
func TestLargeFDBMaxEntries(t *testing.T) {
	const limit = 3*128 + 7
	r := newRig(t, 2, Config{MaxEntries: limit})
	for i := range 5 * 128 {
		r.sw.Input(r.ports[0], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
	}
	require.Len(t, r.sw.Entries(), limit)
	require.EqualValues(t, 5*128-limit, r.sw.LearnRefused.Load())
}

// TestFDBTable: the table's probing, growth and copies, without a switch.
func TestFDBTable(t *testing.T) {
	p, q := &Port{PortConfig: PortConfig{Name: "p"}}, &Port{PortConfig: PortConfig{Name: "q"}}
	// A seed of 0 and keys that differ only in the VLAN still spread; a
	// few thousand rows exercise wrap-around at the end of the slots.
	tab := newTable(0, 0)
	const n = 5000
	for i := range n {
		k := keyOf(uint16(i%4), floodMAC(i/4))
		require.Nil(t, tab.find(k))
		if tab.full() {
			tab = tab.grown()
		}
		tab.put(k, p, i%7 == 0, int64(i))
		require.LessOrEqual(t, tab.n*4, len(tab.slots)*3)
	}
	require.Equal(t, n, tab.n)
	for i := range n {
		k := keyOf(uint16(i%4), floodMAC(i/4))
		e := tab.find(k)
		require.NotNil(t, e, "row %d", i)
		require.Equal(t, k, e.fdbKey())
		require.Equal(t, floodMAC(i/4), e.mac())
		require.Equal(t, uint16(i%4), e.vlan())
		require.Equal(t, i%7 == 0, e.static())
		require.EqualValues(t, i, e.seen.Load())
	}
	// Doubling: n rows in a table of at most 2 * 4/3 * n slots.
	require.LessOrEqual(t, len(tab.slots), 2*n*4/3+minSlots)
	require.Nil(t, tab.find(keyOf(4, floodMAC(0))))
	rows := 0
	tab.rows(func(e *slot) {
		rows++
		if e.static() {
			e.port.Store(q)
		}
	})
	require.Equal(t, n, rows)
	// A grown table has the same rows, ports and ages.
	g := tab.grown()
	require.Equal(t, 2*len(tab.slots), len(g.slots))
	for i := range n {
		k := keyOf(uint16(i%4), floodMAC(i/4))
		e := g.find(k)
		require.NotNil(t, e)
		require.Equal(t, i%7 == 0, e.port.Load() == q)
		require.EqualValues(t, i, e.seen.Load())
	}
}

// TestConcurrentLearningLargeFDB learns many MACs from every port at once,
// with sweeps and listings in between, under the race detector.
func TestConcurrentLearningLargeFDB(t *testing.T) {
	sw := New(Config{Name: "race", Clock: &clock.Fake{}})
	const n, perPort = 4, 600
	ports := make([]*Port, n)
	for i := range ports {
		p, err := sw.AddPort(PortConfig{Name: string(rune('a' + i))}, discard{})
		require.NoError(t, err)
		ports[i] = p
	}
	done := make(chan struct{})
	for i := range ports {
		go func() {
			defer func() { done <- struct{}{} }()
			f := frame(t, mac(1), packet.Broadcast)
			for j := range perPort {
				packet.Ethernet(f).SetSrc(floodMAC(i*perPort + j))
				sw.Input(ports[i], f, packet.Offload{})
				// known unicast to a station another port learned
				packet.Ethernet(f).SetDst(floodMAC(((i+1)%n)*perPort + j/2))
				sw.Input(ports[i], f, packet.Offload{})
				packet.Ethernet(f).SetDst(packet.Broadcast)
				if j%150 == 0 {
					sw.Expire()
					_ = sw.Entries()
				}
			}
		}()
	}
	for range ports {
		<-done
	}
	entries := sw.Entries()
	require.Len(t, entries, n*perPort)
	seen := map[packet.MAC]bool{}
	for _, e := range entries {
		require.False(t, seen[e.MAC], "listed twice: %v", e.MAC)
		seen[e.MAC] = true
	}
}
