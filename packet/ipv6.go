package packet

import "encoding/binary"

// IPv6 header size.
const IPv6HeaderLen = 40

// IPv6 is a view over an IPv6 packet: the fixed header only, which is what
// segmenting an offloaded super-frame needs.
type IPv6 []byte

// Valid reports whether the fixed header fits and says version 6.
func (p IPv6) Valid() bool { return len(p) >= IPv6HeaderLen && p[0]>>4 == 6 }

// NextHeader is the protocol of what follows the fixed header.
func (p IPv6) NextHeader() uint8 { return p[6] }

// SetPayloadLen sets the payload length field.
func (p IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(p[4:6], n) }

// Addrs are the source and destination addresses, as the pseudo header
// sums them.
func (p IPv6) Addrs() []byte { return p[8:IPv6HeaderLen] }
