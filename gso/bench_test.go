package gso

import (
	"testing"
)

func benchSegment(b *testing.B, s spec) {
	frame, o := build(b, s)
	scratch := make([]byte, len(frame))
	emit := func([]byte) error { return nil }
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Segment(frame, o, scratch, emit); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSegmentTCPv4_64K(b *testing.B) { benchSegment(b, spec{payload: max4, tsOpt: true}) }
func BenchmarkSegmentTCPv6_64K(b *testing.B) {
	benchSegment(b, spec{v6: true, payload: max6, tsOpt: true})
}
func BenchmarkSegmentUDPL4_64K(b *testing.B) {
	benchSegment(b, spec{udp: true, payload: 0xffff - 28, mss: 1472})
}

func BenchmarkComplete1500(b *testing.B) {
	frame, o := build(b, spec{payload: 1500 - 14 - 20 - 32, tsOpt: true})
	o = plainCsum(o)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		// Completing again sums the checksum just written: the same work.
		if err := Complete(frame, o); err != nil {
			b.Fatal(err)
		}
	}
}
