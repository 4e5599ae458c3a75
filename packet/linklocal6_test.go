package packet

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLinkLocal6Words: the words computed in registers are LinkLocal6's
// (the known EUI-64 form of one MAC), for MACs with every bit pattern.
func TestLinkLocal6Words(t *testing.T) {
	m := MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	require.Equal(t, netip.MustParseAddr("fe80::42:acff:fe11:2").As16(), m.LinkLocal6())
	for _, mac := range []MAC{m, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {}, {1, 2, 3, 4, 5, 6}, {0x80, 0x40, 0x20, 0x10, 0x08, 0x04}} {
		hi, lo := mac.LinkLocal6Words()
		wantHi, wantLo := Words6(mac.LinkLocal6())
		require.Equal(t, [2]uint64{wantHi, wantLo}, [2]uint64{hi, lo}, "%v", mac)
	}
}
