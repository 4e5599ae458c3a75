package nat

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/rule"
)

// TestReplaceKeepsCounters: a recompiled rule set swapped in keeps the
// counters of the rules it still has; new rules start at zero, and the
// Rules value the tracker holds evaluates the new set.
func TestReplaceKeepsCounters(t *testing.T) {
	plan := &config.Plan{
		Uplink:   &config.Uplink{Address: netip.MustParsePrefix("10.250.0.2/30")},
		Networks: []config.Network{{Name: "front", Subnet: netip.MustParsePrefix("172.20.0.0/24"), Masquerade: true, Isolate: true}},
	}
	rs, err := compilePlan(plan, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	masq := rs.set.Load().nat[Postrouting][0]
	masq.Packets.Store(7)
	masq.Bytes.Store(700)

	next := *plan
	next.Networks = append(next.Networks, config.Network{Name: "back", Subnet: netip.MustParsePrefix("172.21.0.0/24"), Isolate: true})
	ns, err := compilePlan(&next, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rs.Replace(ns)
	var got []rule.Listed
	for _, r := range rs.List() {
		if r.Comment == "isolation" || r.Comment == "masquerade front" {
			got = append(got, r)
		}
	}
	require.Len(t, got, 3, "isolation both ways, and the masquerade")
	for _, r := range got {
		if r.Comment == "masquerade front" {
			require.EqualValues(t, 7, r.Packets)
			require.EqualValues(t, 700, r.Bytes)
		} else {
			require.Zero(t, r.Packets)
		}
	}
}
