package packet

import (
	"encoding/binary"
	"fmt"
	"net"
)

// MAC is a 48-bit Ethernet address. It is comparable and usable as a map key.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ParseMAC parses the colon-separated hexadecimal form.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("%q is not a 48-bit MAC address", s)
	}
	return MAC(hw), nil
}

// String returns the lower-case colon-separated form, like ip link.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsMulticast reports whether the group bit is set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 == 1 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// Uint64 packs m into the low 48 bits of a uint64. It reads bytes 0-3 and
// 4-5, the pieces a copy of a MAC is stored in: a read across them (2-5)
// waits for both stores to retire (a failed store forward), which cost
// the switch a third of its time per frame.
func (m MAC) Uint64() uint64 {
	return uint64(binary.BigEndian.Uint32(m[0:4]))<<16 | uint64(binary.BigEndian.Uint16(m[4:6]))
}

// MACFromUint64 is the inverse of MAC.Uint64: the MAC in the low 48 bits
// of v.
func MACFromUint64(v uint64) MAC {
	var m MAC
	binary.BigEndian.PutUint32(m[0:4], uint32(v>>16))
	binary.BigEndian.PutUint16(m[4:6], uint16(v))
	return m
}

// MarshalText implements encoding.TextMarshaler so MACs read well in JSON.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
