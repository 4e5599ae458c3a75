package live

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

// A network's listing says masquerade6 where it has subnet6.
func TestNetworkOfMasquerade6(t *testing.T) {
	n := config.Network{Name: "front", Subnet: netip.MustParsePrefix("172.20.0.0/24"), Gateway: netip.MustParseAddr("172.20.0.1"),
		Subnet6: netip.MustParsePrefix("fd00:20::/64"), Gateway6: netip.MustParseAddr("fd00:20::1"), Masquerade6: true}
	info := NetworkOf(n)
	require.True(t, info.Masquerade6)
	require.Equal(t, "fd00:20::/64", info.Subnet6)
	n.Masquerade6 = false
	require.False(t, NetworkOf(n).Masquerade6)
}
