package tap

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// fakeRing is an rxRing over plain memory, whose slots a test fills as the
// kernel would.
func fakeRing(slots int, vnet bool) *rxRing {
	return newRxRing(make([]byte, slots*ringSlot), ringSlot, vnet)
}

// macOff is where the kernel puts a frame in a slot: after the
// tpacket2_hdr and sockaddr_ll, aligned, and the vnet header if any.
func macOff(vnet bool) int {
	if vnet {
		return 76
	}
	return 66
}

// fill writes frame into slot i with header fields h (Mac and Snaplen and
// Len from the frame unless set) and the vnet header of off, then status.
func fill(r *rxRing, i int, frame []byte, off packet.Offload, h unix.Tpacket2Hdr) {
	s := r.mem[i*r.size : (i+1)*r.size]
	if h.Mac == 0 {
		h.Mac = uint16(macOff(r.vnet))
	}
	if h.Snaplen == 0 {
		h.Snaplen = uint32(len(frame))
	}
	if h.Len == 0 {
		h.Len = uint32(len(frame))
	}
	if int(h.Mac)+len(frame) <= len(s) {
		copy(s[h.Mac:], frame)
	}
	if r.vnet && int(h.Mac) >= packet.VnetHdrLen {
		off.PutVnetHdr(s[int(h.Mac)-packet.VnetHdrLen:])
	}
	*(*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0])) = h
}

func testFrame(n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i)
	}
	packet.Ethernet(f).SetEtherType(packet.EtherTypeIPv4)
	return f
}

func TestRxRingFrames(t *testing.T) {
	r := fakeRing(2, true)
	if kind, _, _, _ := r.next(); kind != entryNone {
		t.Fatalf("empty ring: kind %d", kind)
	}
	off := packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: 34, CsumOffset: 16}
	f := testFrame(1514)
	fill(r, 0, f, off, unix.Tpacket2Hdr{Status: unix.TP_STATUS_USER})
	// A tagged frame whose tag the kernel took off, 802.1ad.
	g := testFrame(100)
	fill(r, 1, g, off, unix.Tpacket2Hdr{Status: unix.TP_STATUS_USER | unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID, Vlan_tci: 100, Vlan_tpid: 0x88a8})
	if !r.ready() {
		t.Fatal("ready: false with a frame waiting")
	}
	kind, slot, frame, got := r.next()
	if kind != entryFrame || slot != 0 || !bytes.Equal(frame, f) || got != off {
		t.Fatalf("slot 0: kind %d slot %d, %d bytes, %+v", kind, slot, len(frame), got)
	}
	if &frame[0] != &r.mem[macOff(true)] {
		t.Fatal("frame not in its slot")
	}
	r.release(slot)
	kind, slot, frame, got = r.next()
	if kind != entryFrame || slot != 1 || len(frame) != len(g)+4 {
		t.Fatalf("slot 1: kind %d slot %d, %d bytes", kind, slot, len(frame))
	}
	if !bytes.Equal(frame[12:16], []byte{0x88, 0xa8, 0, 100}) || !bytes.Equal(frame[:12], g[:12]) || !bytes.Equal(frame[16:], g[12:]) {
		t.Fatalf("tag not restored: % x", frame[:20])
	}
	if got.CsumStart != 38 {
		t.Fatalf("csum start %d after the tag, want 38", got.CsumStart)
	}
	r.release(slot)
	// The ring wraps: slot 0 again, once the kernel fills it.
	if kind, _, _, _ := r.next(); kind != entryNone || r.ready() {
		t.Fatalf("released ring: kind %d", kind)
	}
	fill(r, 0, f, packet.Offload{}, unix.Tpacket2Hdr{Status: unix.TP_STATUS_USER})
	if kind, slot, _, _ := r.next(); kind != entryFrame || slot != 0 {
		t.Fatalf("after the wrap: kind %d slot %d", kind, slot)
	}
	if st := r.stats(); st != (RingStats{Frames: 3}) {
		t.Fatalf("stats %+v", st)
	}
}

// TestRxRingDrops: entries the kernel marks copied are left to the socket;
// truncated and malformed ones are counted as such, and nothing panics.
func TestRxRingDrops(t *testing.T) {
	f := testFrame(200)
	user := uint32(unix.TP_STATUS_USER)
	cases := []struct {
		name string
		vnet bool
		h    unix.Tpacket2Hdr
		kind int
		want RingStats
	}{
		{"copied", true, unix.Tpacket2Hdr{Status: user | unix.TP_STATUS_COPY, Len: 60000, Snaplen: 1900}, entryCopy, RingStats{Copied: 1}},
		{"truncated", true, unix.Tpacket2Hdr{Status: user, Len: 60000}, entryBad, RingStats{Truncated: 1}},
		{"mac in the header", false, unix.Tpacket2Hdr{Status: user, Mac: 20}, entryBad, RingStats{Malformed: 1}},
		{"mac over the vnet header", true, unix.Tpacket2Hdr{Status: user, Mac: tpHdrLen + 8}, entryBad, RingStats{Malformed: 1}},
		{"past the slot", false, unix.Tpacket2Hdr{Status: user, Mac: ringSlot - 100}, entryBad, RingStats{Malformed: 1}},
		{"snaplen past the slot", false, unix.Tpacket2Hdr{Status: user, Snaplen: 1 << 31, Len: 1 << 31}, entryBad, RingStats{Malformed: 1}},
		{"runt", false, unix.Tpacket2Hdr{Status: user, Snaplen: 10, Len: 10}, entryBad, RingStats{Malformed: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := fakeRing(4, c.vnet)
			fill(r, 0, f, packet.Offload{}, c.h)
			kind, _, frame, _ := r.next()
			if kind != c.kind || frame != nil || r.stats() != c.want {
				t.Fatalf("kind %d (want %d), frame %d bytes, stats %+v (want %+v)", kind, c.kind, len(frame), r.stats(), c.want)
			}
		})
	}
}

func TestRxRingAllocs(t *testing.T) {
	r := fakeRing(4, true)
	f := testFrame(64)
	h := unix.Tpacket2Hdr{Status: unix.TP_STATUS_USER | unix.TP_STATUS_VLAN_VALID, Vlan_tci: 7}
	allocs := testing.AllocsPerRun(100, func() {
		fill(r, r.head, f, packet.Offload{}, h)
		kind, slot, _, _ := r.next()
		if kind != entryFrame {
			t.Fatalf("kind %d", kind)
		}
		r.release(slot)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per ring read", allocs)
	}
}

func BenchmarkRxRingNext(b *testing.B) {
	r := fakeRing(4, true)
	for i := range 4 {
		fill(r, i, testFrame(64), packet.Offload{}, unix.Tpacket2Hdr{})
	}
	b.ReportAllocs()
	for b.Loop() {
		r.slot(r.head).Status = unix.TP_STATUS_USER // as the kernel marks a filled slot
		kind, slot, _, _ := r.next()
		if kind != entryFrame {
			b.Fatalf("kind %d", kind)
		}
		r.release(slot)
	}
}

// FuzzRxRing: whatever a slot holds, next neither panics nor returns a
// frame outside its slot.
func FuzzRxRing(f *testing.F) {
	f.Add(uint32(unix.TP_STATUS_USER), uint32(100), uint32(100), uint16(76), uint16(0), true)
	f.Add(uint32(unix.TP_STATUS_USER|unix.TP_STATUS_VLAN_VALID), uint32(1514), uint32(1514), uint16(66), uint16(5), false)
	f.Add(uint32(unix.TP_STATUS_USER|unix.TP_STATUS_COPY), uint32(65000), uint32(1900), uint16(76), uint16(0), true)
	f.Fuzz(func(t *testing.T, status, length, snap uint32, mac, tci uint16, vnet bool) {
		r := fakeRing(1, vnet)
		fill(r, 0, nil, packet.Offload{}, unix.Tpacket2Hdr{Status: status, Len: length, Snaplen: snap, Mac: mac, Vlan_tci: tci})
		r.slot(0).Snaplen, r.slot(0).Len, r.slot(0).Mac = snap, length, mac
		kind, _, frame, _ := r.next()
		if kind == entryFrame {
			lo := uintptr(unsafe.Pointer(&r.mem[0]))
			p := uintptr(unsafe.Pointer(&frame[0]))
			if p < lo+tpHdrLen || p+uintptr(len(frame)) > lo+uintptr(r.size) {
				t.Fatalf("frame of %d bytes outside its slot", len(frame))
			}
		}
	})
}

// polledFake is a Polled port that is not a Packet: one frame waiting.
type polledFake struct{ frame []byte }

func (f *polledFake) ReadFrame(b []byte) (int, packet.Offload, error) {
	return copy(b, f.frame), packet.Offload{}, nil
}
func (f *polledFake) WriteFrame(b []byte, off packet.Offload) error { return nil }
func (f *polledFake) Close() error                                  { return nil }
func (f *polledFake) Fd() int                                       { return -1 }
func (f *polledFake) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	if f.frame == nil {
		return 0, packet.Offload{}, false, nil
	}
	n := copy(b, f.frame)
	f.frame = nil
	return n, packet.Offload{}, true, nil
}

// TestTryBorrowCopies: a port that does not lend reads into the buffer
// given, and Return does nothing.
func TestTryBorrowCopies(t *testing.T) {
	want := testFrame(60)
	dev := &polledFake{frame: want}
	buf := make([]byte, MaxFrame)
	f, _, ok, err := TryBorrow(dev, buf)
	if !ok || err != nil || !bytes.Equal(f, want) || &f[0] != &buf[0] {
		t.Fatalf("TryBorrow: ok %v err %v, %d bytes", ok, err, len(f))
	}
	Return(dev)
	if _, _, ok, _ := TryBorrow(dev, buf); ok {
		t.Fatal("a second frame from an empty port")
	}
}
