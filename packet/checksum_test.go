package packet

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// refChecksum is RFC 1071 word by word, the plain reference the fast Sum
// must agree with.
func refChecksum(b []byte, s uint32) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return ^fold(s)
}

// sumInitials are initial values worth trying: zero, the two one's
// complement zeros, a pseudo-header sized sum, and large ones.
var sumInitials = []uint32{0, 1, 0xffff, 0x10000, 0x2fffd, 0x1234567, 0x7ffe0000}

func TestSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70000)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	ones := make([]byte, 70000)
	for i := range ones {
		ones[i] = 0xff
	}
	zeros := make([]byte, 70000)
	lengths := []int{1499, 1500, 9000, 65535, 65536, 70000}
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	for _, data := range [][]byte{buf, ones, zeros} {
		for _, n := range lengths {
			for off := range 8 { // every alignment of the 8-byte loads
				if off+n > len(data) {
					continue
				}
				b := data[off : off+n]
				for _, init := range sumInitials {
					if uint64(init)+uint64(n+1)/2*0xffff >= 1<<32 {
						continue // the reference's 32-bit sum would overflow
					}
					if got, want := Checksum(b, init), refChecksum(b, init); got != want {
						t.Fatalf("len %d off %d initial %#x: Checksum %#04x, the reference %#04x", n, off, init, got, want)
					}
				}
			}
		}
	}
}

func FuzzSum(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Add([]byte{0xff}, uint32(0xffff))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint32(1))
	f.Add([]byte("an odd number of bytes, more than thirty-two of them"), uint32(0x2fffd))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32) {
		initial &= 0x7fffffff // the reference's 32-bit sum must not overflow
		if len(b) > 1<<16 {
			b = b[:1<<16]
		}
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("len %d initial %#x: Checksum %#04x, the reference %#04x", len(b), initial, got, want)
		}
	})
}

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1<<16)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, n := range []int{20, 1500, 1 << 16} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				Checksum(buf[:n], 0)
			}
		})
	}
}

// The 20-byte header's word-wise check agrees with Checksum, including
// headers whose words sum past 32 bits.
func TestHeaderChecksumValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100000 {
		h := make(IPv4, 20)
		for j := range h {
			h[j] = byte(rng.Uint32())
			if i%3 == 0 {
				h[j] |= 0xf0 // large words
			}
		}
		h[0] = 0x45
		if i%2 == 0 {
			h.SetHeaderChecksum()
		}
		if got, want := h.HeaderChecksumValid(), Checksum(h, 0) == 0; got != want {
			t.Fatalf("header % x: HeaderChecksumValid %t, Checksum says %t", []byte(h), got, want)
		}
	}
}
