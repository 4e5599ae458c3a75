package gso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/uswitch-dev/uswitch/packet"
)

// FuzzSegment feeds Segment any frame and offload header: it must not
// panic, must not touch frame, must emit only within scratch, and what it
// emits must be right: a completed checksum that verifies, or segments that
// pass the reference checks and carry frame's payload in order.
func FuzzSegment(f *testing.F) {
	add := func(frame []byte, o packet.Offload, scratch int) {
		f.Add(frame, o.Flags, o.GSOType, o.HdrLen, o.GSOSize, o.CsumStart, o.CsumOffset, uint16(scratch))
	}
	for _, s := range []spec{
		// Small, for the fuzzer to minimize what it finds quickly.
		{payload: 300, tsOpt: true, fin: true, psh: true, cwr: true, mss: 100},
		{payload: 100, ipOpts: true, mss: 30},
		{v6: true, payload: 200, mss: 64},
		{vlan: layers.EthernetTypeDot1Q, payload: 150, mss: 100},
		{udp: true, payload: 250, mss: 100},
		{udp: true, v6: true, vlan: layers.EthernetTypeQinQ, payload: 99, mss: 10},
	} {
		frame, o := build(f, s)
		add(frame, o, len(frame))
		add(frame, packet.Offload{GSOType: o.GSOType, GSOSize: o.GSOSize}, int(o.HdrLen+o.GSOSize))
		add(frame, plainCsum(o), len(frame))
		add(frame[:o.HdrLen-1], o, len(frame))
	}
	add([]byte{1, 2, 3}, packet.Offload{}, 0)
	f.Fuzz(func(t *testing.T, frame []byte, flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset, scratchLen uint16) {
		o := packet.Offload{Flags: flags, GSOType: gsoType, HdrLen: hdrLen, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		orig := bytes.Clone(frame)
		scratch := make([]byte, scratchLen)
		var n, short int // frames emitted, segments with less than GSOSize payload
		var payload, completed []byte
		err := Segment(frame, o, scratch, func(b []byte) error {
			n++
			switch {
			case o.Plain():
				if len(b) != len(frame) || len(b) > 0 && &b[0] != &frame[0] {
					t.Fatal("plain frame not emitted as is")
				}
			case len(b) > len(scratch) || len(b) > 0 && &b[0] != &scratch[0]:
				t.Fatalf("emitted %d bytes at %p, not within scratch (%d bytes at %p)", len(b), b, len(scratch), scratch)
			case !o.IsGSO():
				at := int(o.CsumStart) + int(o.CsumOffset)
				if !bytes.Equal(b[:at], frame[:at]) || !bytes.Equal(b[at+2:], frame[at+2:]) {
					t.Fatal("checksum completion changed more than the checksum")
				}
				if packet.Checksum(b[o.CsumStart:], uint32(binary.BigEndian.Uint16(frame[at:]))) != 0 {
					t.Fatal("completed checksum does not verify")
				}
				completed = bytes.Clone(b)
			default:
				_, p := wire(t, b)
				if len(p) > int(o.GSOSize) || short > 0 {
					t.Fatalf("segment %d: %d payload bytes after %d short segments, GSO size %d", n, len(p), short, o.GSOSize)
				}
				if len(p) < int(o.GSOSize) {
					short++
				}
				payload = append(payload, p...)
			}
			return nil
		})
		if !bytes.Equal(orig, frame) {
			t.Fatal("frame modified")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrScratch) {
				t.Fatalf("unexpected error %v", err)
			}
			if n != 0 {
				t.Fatalf("%d frames emitted before error %v", n, err)
			}
			return
		}
		if n == 0 {
			t.Fatal("nothing emitted")
		}
		if o.IsGSO() && !bytes.HasSuffix(frame, payload) {
			t.Fatal("segment payloads are not the super-frame's")
		}
		if completed != nil {
			c := bytes.Clone(frame)
			if err := Complete(c, o); err != nil || !bytes.Equal(c, completed) {
				t.Fatalf("Complete (error %v) does not do what Segment did", err)
			}
		}
	})
}
