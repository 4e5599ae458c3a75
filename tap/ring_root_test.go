package tap

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/nsthread"
	"github.com/uswitch-dev/uswitch/packet"
)

// TestPacketRing reads a veth through a receive ring, with the descriptor
// in the Go netpoller and polled: ARP round trip, VLAN tags put back, TCP
// super-frames with their vnet headers (too large for a slot: read from
// the socket), and no allocation per frame.
func TestPacketRing(t *testing.T) { bothModes(t, testPacketRing) }

func testPacketRing(t *testing.T, polled bool) {
	ns := newNetns(t)
	h := handleAt(t, ns)
	pk, peer, mac := vethWith(t, ns, h, false, PacketOptions{Vnet: true, Polled: polled, Ring: true, QdiscBypass: true})
	pl, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("10.99.1.99"), HardwareAddr: fakeMAC}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}

	// Reads and writes allocate nothing: an ARP request out, its reply in
	// through the ring.
	probe := arpRequest(t, 0, fakeMAC, "10.99.1.99", "10.99.1.2")
	// (An allocation-free check: gopacket allocates.)
	reply := func(f []byte) bool {
		return len(f) >= packet.ARPFrameLen && packet.Ethernet(f).EtherType() == packet.EtherTypeARP && f[21] == 2 && bytes.Equal(f[22:28], mac)
	}
	b := make([]byte, MaxFrame)
	allocs := testing.AllocsPerRun(50, func() {
		if err := pk.WriteFrame(probe, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		for { // the namespace may send IPv6 of its own meanwhile
			n, _, err := pk.ReadFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if reply(b[:n]) {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read", allocs)
	}
	if polled {
		// Nothing waits: a borrow says so at once; the reply to a probe is
		// lent in its slot, without allocating.
		if _, _, ok, err := pk.TryBorrowFrame(b); ok || err != nil {
			t.Fatalf("TryBorrowFrame with nothing waiting: ok %v, err %v", ok, err)
		}
		allocs := testing.AllocsPerRun(50, func() {
			if err := pk.WriteFrame(probe, packet.Offload{}); err != nil {
				t.Fatal(err)
			}
			for {
				f := borrow(t, pk, b)
				ok := reply(f)
				pk.Release()
				if &f[0] == &b[0] {
					t.Fatalf("borrowed %d bytes, not in the ring", len(f))
				}
				if ok {
					break
				}
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per write and borrow", allocs)
		}
	}

	// Tagged frames from the namespace side: the ring's slot header has
	// the tag, put back in front of the frame.
	sendTagged(t, ns, h, peer, func(frame []byte) {
		for {
			n, _, err := pk.ReadFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(b[:n], frame) {
				return
			}
		}
	})

	before, _ := pk.RingStats()
	awaitSuperFrame(t, ns, pk, mac, "10.99.1.99", "10.99.1.2", pk.ReadFrame)
	st, ok := pk.RingStats()
	if !ok || st.Copied == before.Copied || st.Frames == before.Frames || st.Truncated != 0 || st.Malformed != 0 {
		t.Fatalf("ring stats %+v (before the TCP %+v): want frames in slots and super-frames copied, none lost", st, before)
	}
}

// borrow waits for the next frame lent by p.
func borrow(t *testing.T, p *Packet, b []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, _, ok, err := p.TryBorrowFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatal("no frame within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPacketRingCloseWhileLent: a frame lent when the port is closed stays
// readable until Release, which unmaps the ring; reads then fail with
// ErrClosed.
func TestPacketRingCloseWhileLent(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	h := handleAt(t, ns)
	pk, _, mac := vethWith(t, ns, h, true, PacketOptions{Polled: true, Ring: true})
	probe := arpRequest(t, 0, fakeMAC, "10.99.1.99", "10.99.1.2")
	if err := pk.WriteFrame(probe, packet.Offload{}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, MaxFrame)
	var f []byte
	for f == nil || !isARPReply(0, "10.99.1.2", mac)(f) {
		if f != nil {
			pk.Release()
		}
		f = borrow(t, pk, b)
	}
	if err := pk.Close(); err != nil {
		t.Fatal(err)
	}
	if pk.ring.mem == nil {
		t.Fatal("ring unmapped under a lent frame")
	}
	if !isARPReply(0, "10.99.1.2", mac)(f) { // still mapped
		t.Fatal("lent frame changed")
	}
	pk.Release()
	if pk.ring.mem != nil {
		t.Fatal("ring still mapped after Close and Release")
	}
	if _, _, _, err := pk.TryBorrowFrame(b); err != ErrClosed {
		t.Fatalf("TryBorrowFrame after Close: %v, want ErrClosed", err)
	}
	if _, _, err := pk.ReadFrame(b); err != ErrClosed {
		t.Fatalf("ReadFrame after Close: %v, want ErrClosed", err)
	}
}

// TestPacketRingLinkGone: when the veth goes away under a ring port, a
// waiting ReadFrame and a poll thread's TryBorrowFrame report the error
// (ENETDOWN), as a recvmsg would, instead of waiting on an empty ring.
func TestPacketRingLinkGone(t *testing.T) {
	needRoot(t)
	for _, o := range []PacketOptions{{Ring: true}, {Ring: true, Polled: true}, {}, {Polled: true}} {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			ns := newNetns(t)
			h := handleAt(t, ns)
			o.Vnet = true
			pk, peer, _ := vethWith(t, ns, h, false, o)
			done := make(chan error, 1)
			go func() {
				b := make([]byte, MaxFrame)
				for {
					if _, _, err := pk.ReadFrame(b); err != nil {
						done <- err
						return
					}
				}
			}()
			pl, err := h.LinkByName(peer)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkDel(pl); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || err == ErrClosed {
					t.Fatalf("ReadFrame after the link went: %v, want its error", err)
				}
				t.Logf("ReadFrame: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("ReadFrame still waiting 5 s after the link went")
			}
		})
	}
}

// BenchmarkPacketRead: the cost of reading a 64-byte frame at a veth's
// host end, polled: through a receive ring (lent in place) and with one
// recvmsg each. Frames are sent from the namespace side 128 at a time with
// the timer stopped, until the host end has received them all; then the
// timer runs while they are read.
func BenchmarkPacketRead(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("needs root")
	}
	const batch = 128
	for _, ring := range []bool{false, true} {
		b.Run(fmt.Sprintf("ring=%t", ring), func(b *testing.B) {
			ns := newNetns(b)
			h := handleAt(b, ns)
			pk, peer, _ := vethWith(b, ns, h, true, PacketOptions{Polled: true, Ring: ring})
			pl, err := h.LinkByName(peer)
			if err != nil {
				b.Fatal(err)
			}
			var inner *Packet
			if err := nsthread.In(ns, func() (err error) { inner, err = OpenPacket(peer, pl.Attrs().Index, false, false); return }); err != nil {
				b.Fatal(err)
			}
			defer inner.Close()
			rxPackets := func() uint64 {
				l, err := h.LinkByName(pk.Name())
				if err != nil {
					b.Fatal(err)
				}
				return l.Attrs().Statistics.RxPackets
			}
			frame := make([]byte, 64)
			copy(frame, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5}) // local experimental ethertype
			buf := make([]byte, MaxFrame)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				b.StopTimer()
				want := rxPackets() + batch
				for range batch {
					if err := inner.WriteFrame(frame, packet.Offload{}); err != nil {
						b.Fatal(err)
					}
				}
				for rxPackets() < want {
					runtime.Gosched()
				}
				b.StartTimer()
				for got := 0; got < batch; {
					f, _, ok, err := TryBorrow(pk, buf)
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						b.Fatalf("%d of %d frames read", got, batch)
					}
					if len(f) == 64 && f[12] == 0x88 {
						got++
					}
					Return(pk)
				}
			}
		})
	}
}

// BenchmarkPacketWrite: sending a 64-byte frame out of a veth's host end,
// through the queueing discipline layer (a veth has none: noqueue) and past
// it (PACKET_QDISC_BYPASS).
func BenchmarkPacketWrite(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("needs root")
	}
	for _, bypass := range []bool{false, true} {
		b.Run(fmt.Sprintf("qdisc-bypass=%t", bypass), func(b *testing.B) {
			ns := newNetns(b)
			h := handleAt(b, ns)
			pk, _, _ := vethWith(b, ns, h, true, PacketOptions{Polled: true, QdiscBypass: bypass})
			frame := make([]byte, 64)
			copy(frame, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5}) // local experimental ethertype
			b.ReportAllocs()
			for b.Loop() {
				if err := pk.WriteFrame(frame, packet.Offload{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
