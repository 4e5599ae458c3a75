package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/stats"
)

func TestTopRates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	prev := &topSample{at: t0, ports: []datapath.PortInfo{
		{Name: "web", Network: "front", Snapshot: stats.Snapshot{RxPackets: 100, RxBytes: 10000, TxPackets: 50, TxBytes: 5000, Drops: map[string]uint64{"isolated": 2}}},
		{Name: "gone", Network: "front", Snapshot: stats.Snapshot{RxPackets: 5}},
	}}
	cur := &topSample{at: t0.Add(2 * time.Second), fdb: map[string]int{"front": 3, "back": 1}, conns: 7, ports: []datapath.PortInfo{
		{Name: "web", Network: "front", Snapshot: stats.Snapshot{RxPackets: 2100, RxBytes: 2510000, TxPackets: 50, TxBytes: 5000, Drops: map[string]uint64{"isolated": 6, "ttl-exceeded": 2}}},
		{Name: "uplink", Snapshot: stats.Snapshot{TxPackets: 20, TxBytes: 3000}},
	}}
	r := topRates(prev, cur)
	require.Len(t, r, 2)
	require.Equal(t, "web", r[0].port)
	require.InDelta(t, 1000, r[0].rxPPS, 1e-9)
	require.InDelta(t, 8*2500000/2, r[0].rxBPS, 1e-9)
	require.Zero(t, r[0].txPPS)
	require.InDelta(t, 3, r[0].dropsPS, 1e-9) // (4 isolated + 2 ttl-exceeded) / 2 s
	require.InDelta(t, 10, r[1].txPPS, 1e-9, "a new port starts from zero")
	require.InDelta(t, 12000, r[1].txBPS, 1e-9)

	// counters that went back (a re-attached port) give no negative rate
	back := &topSample{at: t0.Add(3 * time.Second), ports: []datapath.PortInfo{{Name: "web", Network: "front"}}}
	require.Zero(t, topRates(cur, back)[0].rxPPS)

	var b bytes.Buffer
	require.NoError(t, writeTop(&b, "/run/uswitch/lab.sock", cur, r))
	require.Equal(t, `uswitch top  /run/uswitch/lab.sock  12:00:02
connections 7   fdb: back 1, front 3

PORT    NETWORK  RX PPS  RX BPS  TX PPS  TX BPS  DROPS/S  DROPS
web     front      1.0k  10.0Mb       0      0b        3  isolated=6 ttl-exceeded=2
uplink  -             0      0b      10  12.0kb        0  -
`, b.String())
}

// TestTopCommand: against a served instance, two batch refreshes show the
// ports and sizes.
func TestTopCommand(t *testing.T) {
	in := startInstance(t)
	in.send(t, "web", macWeb)
	var out bytes.Buffer
	require.NoError(t, top(context.Background(), []string{"--control", in.sock, "-b", "-n", "2", "-d", "0.1"}, &out))
	require.Equal(t, 2, strings.Count(out.String(), "uswitch top"), out.String())
	require.Contains(t, out.String(), "connections 0   fdb: front 2")
	require.Contains(t, out.String(), "\nweb       front")
	require.NotContains(t, out.String(), "\x1b[", "batch mode does not redraw")

	require.ErrorContains(t, top(context.Background(), []string{"--control", in.sock, "-d", "0"}, &out), "at least 0.1")
}
