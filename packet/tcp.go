package packet

import "encoding/binary"

// TCP header layout.
const (
	TCPMinHeaderLen   = 20
	TCPChecksumOffset = 16 // of the checksum field, from the header's start
)

// TCP flag bits.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// TCPOptionMSS is the kind of the maximum segment size option.
const TCPOptionMSS = 2

// TCP is a view over a TCP segment (header, options and data).
type TCP []byte

// TCPFields are the fields Encode writes into a TCP header. DataOffset is
// the header length in bytes (20 without options, a multiple of 4).
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	DataOffset       uint8
	Flags            uint8
	Window           uint16
	Checksum         uint16
	Urgent           uint16
}

// Valid reports whether the header, with its options, fits.
func (t TCP) Valid() bool {
	return len(t) >= TCPMinHeaderLen && t.HeaderLen() >= TCPMinHeaderLen && t.HeaderLen() <= len(t)
}

// SrcPort is the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort is the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq is the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack is the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// HeaderLen is the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[12]>>4) * 4 }

// Flags returns the flag bits (TCPFin, TCPSyn...).
func (t TCP) Flags() uint8 { return t[13] }

// Window is the receive window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// Checksum is the stored checksum.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// Urgent is the urgent pointer.
func (t TCP) Urgent() uint16 { return binary.BigEndian.Uint16(t[18:20]) }

// Options are the header's options (the view must be Valid).
func (t TCP) Options() []byte { return t[TCPMinHeaderLen:t.HeaderLen()] }

// Payload is the data after the header (the view must be Valid).
func (t TCP) Payload() []byte { return t[t.HeaderLen():] }

// MSS returns the value of the maximum segment size option, and false
// when the options hold none or are malformed (the view must be Valid).
func (t TCP) MSS() (uint16, bool) {
	opts := t.Options()
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of options
			return 0, false
		case 1: // no-op
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return 0, false
		}
		if opts[0] == TCPOptionMSS && opts[1] == 4 {
			return binary.BigEndian.Uint16(opts[2:4]), true
		}
		opts = opts[opts[1]:]
	}
	return 0, false
}

// SetSrcPort sets the source port (no checksum update).
func (t TCP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(t[0:2], p) }

// SetDstPort sets the destination port (no checksum update).
func (t TCP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(t[2:4], p) }

// SetSeq sets the sequence number (no checksum update).
func (t TCP) SetSeq(v uint32) { binary.BigEndian.PutUint32(t[4:8], v) }

// SetAck sets the acknowledgment number (no checksum update).
func (t TCP) SetAck(v uint32) { binary.BigEndian.PutUint32(t[8:12], v) }

// SetFlags sets the flag bits (no checksum update).
func (t TCP) SetFlags(f uint8) { t[13] = f }

// SetWindow sets the window (no checksum update).
func (t TCP) SetWindow(w uint16) { binary.BigEndian.PutUint16(t[14:16], w) }

// SetChecksum stores c as the checksum.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:18], c) }

// Encode writes f into the header (options, if DataOffset leaves room for
// them, are the caller's to write).
func (t TCP) Encode(f *TCPFields) {
	t.SetSrcPort(f.SrcPort)
	t.SetDstPort(f.DstPort)
	t.SetSeq(f.Seq)
	t.SetAck(f.Ack)
	t[12] = (f.DataOffset / 4) << 4
	t.SetFlags(f.Flags)
	t.SetWindow(f.Window)
	t.SetChecksum(f.Checksum)
	binary.BigEndian.PutUint16(t[18:20], f.Urgent)
}

// ComputeChecksum sets the checksum over the whole of t with the pseudo
// header of src and dst.
func (t TCP) ComputeChecksum(src, dst [4]byte) {
	t.SetChecksum(0)
	t.SetChecksum(Checksum(t, PseudoHeaderSum(src, dst, ProtoTCP, uint16(len(t)))))
}

// SetSrcPortWithChecksumUpdate sets the source port and adjusts the
// checksum by RFC 1624.
func (t TCP) SetSrcPortWithChecksumUpdate(p uint16) { t.setPort(0, p) }

// SetDstPortWithChecksumUpdate sets the destination port and adjusts the
// checksum by RFC 1624.
func (t TCP) SetDstPortWithChecksumUpdate(p uint16) { t.setPort(2, p) }

func (t TCP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(t[off:])
	if old == p {
		return
	}
	binary.BigEndian.PutUint16(t[off:], p)
	t.SetChecksum(ChecksumUpdate16(t.Checksum(), old, p))
}

// UpdateChecksumPseudoHeaderAddress adjusts the checksum for an address of
// the pseudo header changing from old to new. With full false the checksum
// field holds a partial sum (see UDP.UpdateChecksumPseudoHeaderAddress).
func (t TCP) UpdateChecksumPseudoHeaderAddress(old, new [4]byte, full bool) {
	switch c := t.Checksum(); {
	case old == new:
	case full:
		t.SetChecksum(ChecksumUpdate32(c, old, new))
	default:
		t.SetChecksum(^ChecksumUpdate32(^c, old, new))
	}
}
