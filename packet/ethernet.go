package packet

import "encoding/binary"

// Ethernet header sizes and EtherTypes uswitch handles.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
	EtherTypeIPv4     = 0x0800
	EtherTypeARP      = 0x0806
	EtherTypeVLAN     = 0x8100
	EtherTypeQinQ     = 0x88a8 // 802.1ad service tag
	EtherTypeIPv6     = 0x86dd
)

// Ethernet is a view over an Ethernet II frame.
type Ethernet []byte

// Valid reports whether the frame holds at least a full Ethernet header.
func (e Ethernet) Valid() bool { return len(e) >= EthernetHeaderLen }

// Dst returns the destination MAC.
func (e Ethernet) Dst() MAC { return MAC(e[0:6]) }

// Src returns the source MAC.
func (e Ethernet) Src() MAC { return MAC(e[6:12]) }

// SetDst sets the destination MAC.
func (e Ethernet) SetDst(m MAC) { copy(e[0:6], m[:]) }

// SetSrc sets the source MAC.
func (e Ethernet) SetSrc(m MAC) { copy(e[6:12], m[:]) }

// EtherType returns the type field that follows the addresses (0x8100 for a
// VLAN-tagged frame).
func (e Ethernet) EtherType() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetEtherType sets the type field.
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[12:14], t) }

// VLAN returns the 802.1Q VLAN id of a tagged frame and 0 for an untagged
// one. ok is false when the frame says it is tagged but is too short to hold
// the tag.
func (e Ethernet) VLAN() (vid uint16, ok bool) {
	if e.EtherType() != EtherTypeVLAN {
		return 0, true
	}
	if len(e) < EthernetHeaderLen+VLANTagLen {
		return 0, false
	}
	return binary.BigEndian.Uint16(e[14:16]) & 0x0fff, true
}

// TaggedEtherType is the type field behind one VLAN tag (the frame must
// hold the tag).
func (e Ethernet) TaggedEtherType() uint16 { return binary.BigEndian.Uint16(e[16:18]) }

// SetTag writes a VLAN tag (protocol id and tag control) where the type
// field is; the caller has made room for it.
func (e Ethernet) SetTag(tpid, tci uint16) {
	binary.BigEndian.PutUint16(e[12:14], tpid)
	binary.BigEndian.PutUint16(e[14:16], tci)
}

// Payload returns what follows the (untagged) Ethernet header.
func (e Ethernet) Payload() []byte { return e[EthernetHeaderLen:] }
