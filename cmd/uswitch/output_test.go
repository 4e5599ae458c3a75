package main

import (
	"bytes"
	"flag"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// lines joins golden lines with newlines, for readable expectations.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func tableString(t *testing.T, tb *table) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, tb.write(&b))
	return b.String()
}

func TestTableAlignment(t *testing.T) {
	tb := newTable("NAME", "COUNT>", "NOTE")
	tb.add("a", "1", "x")
	tb.add("longer-name", "12345", "")
	require.Equal(t, lines(
		"NAME         COUNT  NOTE",
		"a                1  x",
		"longer-name  12345",
	), tableString(t, tb))
}

func TestTableEmpty(t *testing.T) {
	require.Equal(t, "A  B\n", tableString(t, newTable("A", "B")))
}

var (
	macWeb = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x0a}
	macAPI = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x0b}
)

func TestFDBTable(t *testing.T) {
	entries := []control.FDBEntry{
		{Network: "front", MAC: macAPI, Port: "api", Age: clock.Duration(12340 * time.Millisecond)},
		{Network: "front", MAC: macWeb, VLAN: 10, Port: "web", Age: clock.Duration(40 * time.Millisecond)},
		{Network: "back", MAC: macWeb, Port: "api/eth1", Static: true, Age: clock.Duration(99 * time.Second)},
	}
	require.Equal(t, lines(
		"MAC                VLAN  PORT      NETWORK  FLAGS      AGE",
		"02:42:ac:14:00:0b     -  api       front    learned  12.3s",
		"02:42:ac:14:00:0a    10  web       front    learned   0.0s",
		"02:42:ac:14:00:0a     -  api/eth1  back     static       -",
	), tableString(t, fdbTable(entries, true)))

	require.Equal(t, lines(
		"MAC                VLAN  PORT  FLAGS      AGE",
		"02:42:ac:14:00:0b     -  api   learned  12.3s",
	), tableString(t, fdbTable(entries[:1], false)))
}

func TestFDBEventLine(t *testing.T) {
	for _, tc := range []struct {
		e    vswitch.Event
		want string
	}{
		{vswitch.Event{Type: vswitch.Learned, Network: "bridge", MAC: macWeb, Port: "demo-a"},
			"learned 02:42:ac:14:00:0a dev demo-a network bridge"},
		{vswitch.Event{Type: vswitch.Moved, Network: "front", MAC: macWeb, Port: "api", From: "web"},
			"moved 02:42:ac:14:00:0a dev api network front (was web)"},
		{vswitch.Event{Type: vswitch.Aged, Network: "front", MAC: macAPI, VLAN: 7, Port: "api"},
			"aged 02:42:ac:14:00:0b vlan 7 dev api network front"},
		{vswitch.Event{Type: vswitch.Flushed, Network: "front", MAC: macAPI, Port: "api"},
			"flushed 02:42:ac:14:00:0b dev api network front"},
	} {
		require.Equal(t, tc.want, fdbEventLine(tc.e))
	}
}

func TestPortsTable(t *testing.T) {
	list := []datapath.PortInfo{
		{Name: "web", Network: "front", Snapshot: stats.Snapshot{RxPackets: 3, RxBytes: 180, TxPackets: 12, TxBytes: 1514}},
		{Name: "api/eth1", Network: "back", Snapshot: stats.Snapshot{RxPackets: 100000, RxBytes: 64000000,
			Drops: map[string]uint64{"truncated": 2, "bad-src-mac": 1}}},
	}
	require.Equal(t, lines(
		"PORT      NETWORK  RX-PKTS  RX-BYTES  TX-PKTS  TX-BYTES  DROPS",
		"web       front          3       180       12      1514  -",
		"api/eth1  back      100000  64000000        0         0  bad-src-mac=1,truncated=2",
	), tableString(t, portsTable(list)))
}

func TestRenderJSON(t *testing.T) {
	var b bytes.Buffer
	entries := []control.FDBEntry{{Network: "front", MAC: macWeb, Port: "web", Age: clock.Duration(1500 * time.Millisecond)}}
	require.NoError(t, render(&b, formatJSON, entries, nil))
	require.Equal(t, lines(
		"[",
		"  {",
		`    "network": "front",`,
		`    "mac": "02:42:ac:14:00:0a",`,
		`    "vlan": 0,`,
		`    "port": "web",`,
		`    "static": false,`,
		`    "age": "1.5s"`,
		"  }",
		"]",
	), b.String())
}

func TestOutputFormatFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	var f inspectFlags
	f.register(fs)
	require.Equal(t, formatTable, f.output)
	require.NoError(t, fs.Parse([]string{"-o", "json"}))
	require.Equal(t, formatJSON, f.output)
	err := fs.Parse([]string{"-o", "yaml"})
	require.ErrorContains(t, err, `unknown output format "yaml" (want table or json)`)
}

func TestVersionText(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	require.Equal(t, lines(
		"uswitch dev",
		"go: "+runtime.Version()+" "+platform,
		"revision: unknown (built without VCS information)",
	), versionText("dev", nil))

	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef"},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	require.Equal(t, lines(
		"uswitch 1.2.3",
		"go: go1.26.8 "+platform,
		"revision: 0123456789abcdef (2026-01-02T03:04:05Z) with local changes",
	), versionText("1.2.3", bi))
}
