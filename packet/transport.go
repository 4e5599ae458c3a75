package packet

import "encoding/binary"

// Transport header lengths.
const (
	UDPHeaderLen    = 8
	TCPMinHeaderLen = 20
)

// Ports is a view over the first four bytes of a TCP or UDP header, which
// hold the source and destination ports in both.
type Ports []byte

// Valid reports whether the ports fit.
func (p Ports) Valid() bool { return len(p) >= 4 }

// Src is the source port.
func (p Ports) Src() uint16 { return binary.BigEndian.Uint16(p[0:2]) }

// Dst is the destination port.
func (p Ports) Dst() uint16 { return binary.BigEndian.Uint16(p[2:4]) }

// TCP is a view over a TCP segment.
type TCP []byte

// Valid reports whether the header, with its options, fits.
func (t TCP) Valid() bool {
	return len(t) >= TCPMinHeaderLen && t.HeaderLen() >= TCPMinHeaderLen && t.HeaderLen() <= len(t)
}

// HeaderLen is the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[12]>>4) * 4 }

// Flags returns the flag bits (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10...).
func (t TCP) Flags() uint8 { return t[13] }

// Seq is the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack is the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// TCP flag bits.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)
