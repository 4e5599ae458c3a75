package vswitch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

// TestLargeFDB exercises a table beyond foldSize, whose newer entries live
// in the recent map until folded: lookups, moves, static pins, ageing and
// flushes must not care which map an entry is in.
func TestLargeFDB(t *testing.T) {
	r := newRig(t, 3, Config{Ageing: 10 * time.Second})
	const n = 1000
	for i := range n {
		r.sw.Input(r.ports[1+i%2], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
	}
	r.delivered()
	require.Len(t, r.sw.Entries(), n)
	require.NotNil(t, r.sw.recent.Load(), "some entries are still in the recent map")
	inRecent := floodMAC(n - 1) // the last learned: in recent (odd: on c)
	inMain := floodMAC(0)       // the first learned: settled (even: on b)
	require.Contains(t, *r.sw.recent.Load(), keyOf(0, inRecent))
	require.Contains(t, *r.sw.fdb.Load(), keyOf(0, inMain))

	// Known unicast to either goes to one port only.
	r.sw.Input(r.ports[0], frame(t, mac(1), inRecent), packet.Offload{})
	require.Equal(t, []int{0, 0, 1}, r.delivered())
	r.sw.Input(r.ports[0], frame(t, mac(1), inMain), packet.Offload{})
	require.Equal(t, []int{0, 1, 0}, r.delivered())

	// A station in the recent map moves.
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
	// the sweep leaves nothing in the recent map.
	r.clk.Advance(9 * time.Second)
	for _, m := range []packet.MAC{inMain, inRecent} {
		r.sw.Input(r.ports[1], frame(t, m, packet.Broadcast), packet.Offload{})
	}
	r.clk.Advance(2 * time.Second)
	r.sw.Expire()
	require.Nil(t, r.sw.recent.Load())
	got := map[packet.MAC]string{}
	for _, e := range r.sw.Entries() {
		got[e.MAC] = e.Port
	}
	// mac(1) was learned on a at the start, not refreshed since.
	require.Equal(t, map[packet.MAC]string{inMain: "b", inRecent: "b", pinned: "c"}, got)

	// Relearning past foldSize and flushing a port empties both maps of it.
	for i := range n {
		r.sw.Input(r.ports[2], frame(t, floodMAC(n+i), packet.Broadcast), packet.Offload{})
	}
	require.Len(t, r.sw.Entries(), n+3)
	require.NotNil(t, r.sw.recent.Load())
	r.sw.RemovePort(r.ports[2])
	got = map[packet.MAC]string{}
	for _, e := range r.sw.Entries() {
		got[e.MAC] = e.Port
	}
	require.Equal(t, map[packet.MAC]string{inMain: "b", inRecent: "b"}, got)
}

// TestLargeFDBMaxEntries: fdb_max counts entries in both maps.
func TestLargeFDBMaxEntries(t *testing.T) {
	r := newRig(t, 2, Config{MaxEntries: 3*foldSize + 7})
	for i := range 5 * foldSize {
		r.sw.Input(r.ports[0], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
	}
	require.Len(t, r.sw.Entries(), 3*foldSize+7)
	require.EqualValues(t, 2*foldSize-7, r.sw.LearnRefused.Load())
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
