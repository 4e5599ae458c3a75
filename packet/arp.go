package packet

import "encoding/binary"

// ARP sizes and operations for Ethernet/IPv4.
const (
	ARPLen     = 28
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is a view over an Ethernet/IPv4 ARP packet (the Ethernet payload).
type ARP []byte

// Valid reports whether this is a complete Ethernet/IPv4 ARP packet.
func (a ARP) Valid() bool {
	return len(a) >= ARPLen &&
		binary.BigEndian.Uint16(a[0:2]) == 1 && // hardware type Ethernet
		binary.BigEndian.Uint16(a[2:4]) == EtherTypeIPv4 &&
		a[4] == 6 && a[5] == 4
}

// Op is the operation: ARPRequest or ARPReply.
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:8]) }

// SenderMAC is the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[8:14]) }

// SenderIP is the sender protocol address.
func (a ARP) SenderIP() [4]byte { return [4]byte(a[14:18]) }

// TargetMAC is the target hardware address.
func (a ARP) TargetMAC() MAC { return MAC(a[18:24]) }

// TargetIP is the target protocol address.
func (a ARP) TargetIP() [4]byte { return [4]byte(a[24:28]) }
