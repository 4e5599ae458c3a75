package defrag

import (
	"encoding/binary"
	"testing"

	"github.com/uswitch-dev/uswitch/packet"
)

// FuzzReassemble feeds fragments cut from the input (offsets, lengths,
// flags and identifications as it says) to a small reassembler: it never
// panics, memory stays within the bound, a datagram it hands over is a
// valid IPv4 packet with no fragment bits, and everything is gone after
// the timeout.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 0, 0x20, 0, 185, 1, 0, 0, 185, 0, 0x20, 185, 185, 0, 0, 0, 185, 10})
	f.Add([]byte{1, 0, 0x20, 0, 40, 1, 0, 0, 5, 40, 1, 0, 0x20, 0, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		const bound = 16 << 10
		r, clk, st := newR(Config{HighThresh: bound})
		frame := make([]byte, packet.EthernetHeaderLen+20+2048)
		for len(b) >= 5 {
			id, flags, off, n := b[0]&3, b[1], binary.BigEndian.Uint16(b[1:3])&0x1fff, int(b[3])<<3|int(b[4]&7)
			b = b[5:]
			n = min(n, 2048)
			ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
			packet.IPv4(ip).Encode(&packet.IPv4Fields{TotalLen: uint16(20 + n), ID: uint16(id), TTL: 64, Protocol: packet.ProtoUDP, Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{10, 0, 0, 2}})
			ip.SetFlagsOffset(uint16(flags&0x60)<<8 | off)
			ip.SetHeaderChecksum()
			if !ip.IsFragment() {
				continue
			}
			if d := r.Add(frame[:packet.EthernetHeaderLen+20+n], st); d != nil {
				whole := packet.IPv4((*d)[packet.EthernetHeaderLen:])
				if !whole.Valid() || whole.IsFragment() || !whole.HeaderChecksumValid() || int(whole.TotalLen()) != len(whole) {
					t.Fatalf("bad datagram handed over: % x", whole[:20])
				}
				r.Release(d)
			}
			if m := r.Mem(); m > bound || m < 0 {
				t.Fatalf("memory %d beyond the bound %d", m, bound)
			}
		}
		clk.Advance(DefaultTimeout)
		r.Tick()
		if r.Mem() != 0 || r.Pending() != 0 {
			t.Fatalf("after the timeout: %d bytes, %d datagrams", r.Mem(), r.Pending())
		}
	})
}
