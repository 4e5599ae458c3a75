package packet

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIsLinkLocal6: the word compare agrees with LinkLocal6 (the known
// EUI-64 form of one MAC) and refuses an address differing in any byte.
func TestIsLinkLocal6(t *testing.T) {
	m := MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	ll := m.LinkLocal6()
	require.Equal(t, netip.MustParseAddr("fe80::42:acff:fe11:2").As16(), ll)
	for _, mac := range []MAC{m, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {}, {1, 2, 3, 4, 5, 6}} {
		a := mac.LinkLocal6()
		require.True(t, mac.IsLinkLocal6(a), "%v", mac)
		for i := range a {
			b := a
			b[i] ^= 0x10
			require.False(t, mac.IsLinkLocal6(b), "%v byte %d", mac, i)
		}
		require.False(t, mac.IsLinkLocal6([16]byte{}))
	}
}
