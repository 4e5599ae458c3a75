package uswitchtest_test

import (
	"github.com/uswitch-dev/uswitch/packet"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// arpRequest is a broadcast ARP request from mac/ip for target.
func arpRequest(mac packet.MAC, ip, target [4]byte) []byte {
	f := make([]byte, 42)
	copy(f[0:6], packet.Broadcast[:])
	copy(f[6:12], mac[:])
	f[12], f[13] = 0x08, 0x06 // ARP
	copy(f[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(f[22:28], mac[:])
	copy(f[28:32], ip[:])
	copy(f[38:42], target[:])
	return f
}

// learned keeps the entries the switch learned (not the static ones of its
// gateway).
func learned(es []vswitch.Entry) []vswitch.Entry {
	var out []vswitch.Entry
	for _, e := range es {
		if !e.Static {
			out = append(out, e)
		}
	}
	return out
}
