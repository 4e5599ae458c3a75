package vswitch

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// collect is every row Each hands over for f, in its order.
func collect(t *testing.T, sw *Switch, f Filter) []Entry {
	t.Helper()
	var out []Entry
	require.NoError(t, sw.Each(f, func(e *Entry) error { out = append(out, *e); return nil }))
	return out
}

// TestEach: rows come in chunks of at most EachChunk, each sorted by port
// then MAC, every live row once; expired rows are left out; filters select
// by port and MAC; fn's error stops the walk.
func TestEach(t *testing.T) {
	r := newRig(t, 3, Config{Ageing: 10 * time.Second})
	const old, fresh = 2*EachChunk + 100, 50
	for i := range old {
		r.sw.Input(r.ports[i%2], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
		r.delivered()
	}
	r.clk.Advance(5 * time.Second)
	for i := old; i < old+fresh; i++ {
		r.sw.Input(r.ports[1], frame(t, floodMAC(i), packet.Broadcast), packet.Offload{})
		r.delivered()
	}
	require.NoError(t, r.sw.AddStatic(0, mac(9), r.ports[2]))

	all := collect(t, r.sw, Filter{})
	require.Len(t, all, old+fresh+1)
	for c := 0; c < len(all); c += EachChunk {
		chunk := all[c:min(c+EachChunk, len(all))]
		require.True(t, slices.IsSortedFunc(chunk, entryOrder), "chunk at %d sorted", c)
	}
	require.False(t, slices.IsSortedFunc(all, entryOrder), "a large table is not sorted as a whole")
	slices.SortFunc(all, entryOrder)
	require.Equal(t, r.sw.Entries(), all, "the same rows as Entries, each once")

	// The first batch expires: what is left fits one chunk, sorted whole.
	r.clk.Advance(6 * time.Second)
	live := collect(t, r.sw, Filter{})
	require.Len(t, live, fresh+1)
	require.Equal(t, r.sw.Entries(), live)
	require.Equal(t, r.sw.Len(), len(live))

	require.Len(t, collect(t, r.sw, Filter{Port: "b"}), fresh)
	require.Empty(t, collect(t, r.sw, Filter{Port: "a"}), "a's rows expired")
	require.Equal(t, []Entry{{MAC: mac(9), Port: "c", Static: true, Age: 6 * time.Second}}, collect(t, r.sw, Filter{MAC: mac(9)}))
	require.Empty(t, collect(t, r.sw, Filter{Port: "b", MAC: mac(9)}))
	require.Len(t, collect(t, r.sw, Filter{Port: "b", MAC: floodMAC(old)}), 1)

	stop := errors.New("stop")
	n := 0
	require.ErrorIs(t, r.sw.Each(Filter{}, func(*Entry) error { n++; return stop }), stop)
	require.Equal(t, 1, n)
}
