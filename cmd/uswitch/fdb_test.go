package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/packet"
)

// manyEntries is n FDB rows, more than one printing chunk when n is.
func manyEntries(n int) []control.FDBEntry {
	out := make([]control.FDBEntry, n)
	for i := range out {
		out[i] = control.FDBEntry{Network: "front", MAC: packet.MAC{0x06, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			Port: "web", Static: i%7 == 0, Age: clock.Duration(i) * 1e6}
	}
	return out
}

// Printed a chunk at a time, a listing of several chunks is the same text
// as the whole table or the whole JSON slice printed at once.
func TestFDBPrintersStream(t *testing.T) {
	for _, n := range []int{0, 1, fdbChunk, 2*fdbChunk + 3} {
		entries := manyEntries(n)
		for _, withNetwork := range []bool{true, false} {
			var whole, streamed bytes.Buffer
			require.NoError(t, fdbTable(entries, withNetwork).write(&whole))
			p := &fdbRows{w: &streamed, t: fdbTable(nil, withNetwork), withNetwork: withNetwork}
			for _, e := range entries {
				require.NoError(t, p.add(e))
				require.LessOrEqual(t, len(p.t.rows), fdbChunk, "a chunk at a time")
			}
			require.NoError(t, p.end())
			require.Equal(t, whole.String(), streamed.String(), "n=%d", n)
		}
		var whole, streamed bytes.Buffer
		require.NoError(t, writeJSON(&whole, entries))
		p := &fdbJSON{w: &streamed}
		for _, e := range entries {
			require.NoError(t, p.add(e))
		}
		require.NoError(t, p.end())
		require.Equal(t, whole.String(), streamed.String(), "n=%d", n)
	}
}

// A later chunk with a longer cell widens its column rather than breaking
// the line.
func TestFDBRowsWiden(t *testing.T) {
	entries := manyEntries(fdbChunk + 1)
	entries[fdbChunk].Port = "a-much-longer-port"
	var b bytes.Buffer
	p := &fdbRows{w: &b, t: fdbTable(nil, false)}
	for _, e := range entries {
		require.NoError(t, p.add(e))
	}
	require.NoError(t, p.end())
	last := strings.Split(strings.TrimSpace(b.String()), "\n")[fdbChunk+1]
	require.Contains(t, last, "  a-much-longer-port  learned")
}

// top reads the FDB sizes from /metrics, counted by the instance.
func TestTopSizes(t *testing.T) {
	conns, fdb, err := topSizes(strings.NewReader(`# HELP uswitch_fdb_entries Live entries in a network's MAC learning table.
# TYPE uswitch_fdb_entries gauge
uswitch_fdb_entries{network="back"} 0
uswitch_fdb_entries{network="front"} 1e+06
uswitch_fdb_entries{network="q\"x"} 3
uswitch_conntrack_entries 7
`))
	require.NoError(t, err)
	require.Equal(t, 7, conns)
	require.Equal(t, map[string]int{"front": 1_000_000, `q"x`: 3}, fdb)

	_, _, err = topSizes(strings.NewReader("uswitch_fdb_entries{network=\"front\"} 2\n"))
	require.EqualError(t, err, "/metrics has no uswitch_conntrack_entries")
	_, _, err = topSizes(strings.NewReader("uswitch_fdb_entries{network=front} 2\nuswitch_conntrack_entries 0\n"))
	require.ErrorContains(t, err, "label in")
}
