package defrag

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// datagram6 is an Ethernet frame holding an IPv6 UDP datagram of n
// payload bytes, with a hop-by-hop header when hbh, built with gopacket.
func datagram6(t testing.TB, n int, hbh bool) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fd00:20::10"), DstIP: net.ParseIP("2001:db8::1")}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = byte(i * 7)
	}
	ls := []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(pl)}
	if hbh {
		ip.NextHeader = layers.IPProtocolIPv6HopByHop
		h := &layers.IPv6HopByHop{}
		h.NextHeader = layers.IPProtocolUDP
		h.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
		ls = []gopacket.SerializableLayer{eth, ip, h, udp, gopacket.Payload(pl)}
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return append([]byte(nil), buf.Bytes()...)
}

// fragments6 splits a frame's IPv6 datagram into fragments (ID id)
// carrying at most chunk bytes of its fragmentable part each (a multiple
// of 8), as a host would.
func fragments6(t testing.TB, frame []byte, id uint32, chunk int) [][]byte {
	const eh = packet.EthernetHeaderLen
	ip := packet.IPv6(frame[eh:])
	at, named, ok := ip.Unfragmentable()
	require.True(t, ok)
	n := len(ip) - at
	var out [][]byte
	for off := 0; off < n; off += chunk {
		end := min(off+chunk, n)
		f := make([]byte, eh+at+packet.IPv6FragmentLen+end-off)
		copy(f, frame[:eh])
		packet.PutFragment6(f[eh:], ip, at, named, off, end, end < n, id)
		out = append(out, f)
	}
	require.Greater(t, len(out), 1)
	return out
}

// feed6 adds frags in order and returns the datagram the last one made
// whole (nil if none), copied out of its pooled buffer, and its fragMax.
func feed6(r *Reassembler, st *stats.Port, frags [][]byte) ([]byte, int) {
	var got []byte
	var most int
	for _, f := range frags {
		if d, m := r.Add6(f, st); d != nil {
			got, most = append([]byte(nil), *d...), m
			r.Release(d)
		}
	}
	return got, most
}

// requireUDP6Valid has gopacket decode a reassembled frame and check its
// UDP checksum over the whole datagram.
func requireUDP6Valid(t *testing.T, frame []byte) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer())
	require.Nil(t, p.Layer(layers.LayerTypeIPv6Fragment), "no fragment header left")
	u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	c := *u
	require.NoError(t, c.SetNetworkLayerForChecksum(p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)))
	require.NoError(t, gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)))
	require.Equal(t, c.Checksum, u.Checksum, "UDP checksum of the whole datagram")
}

func TestReassembles6InAnyOrder(t *testing.T) {
	for _, hbh := range []bool{false, true} {
		for _, n := range []int{1400, 6000, 65000} {
			want := datagram6(t, n, hbh)
			frags := fragments6(t, want, 0x1234, 1232)
			largest := len(frags[0]) - packet.EthernetHeaderLen
			for name, order := range map[string]func([][]byte) [][]byte{
				"in order":   func(f [][]byte) [][]byte { return f },
				"last first": func(f [][]byte) [][]byte { return append([][]byte{f[len(f)-1]}, f[:len(f)-1]...) },
				"reversed": func(f [][]byte) [][]byte {
					o := make([][]byte, len(f))
					for i := range f {
						o[len(f)-1-i] = f[i]
					}
					return o
				},
			} {
				r, _, st := newR(Config{})
				got, most := feed6(r, st, order(append([][]byte(nil), frags...)))
				require.Equal(t, want, got, "%d bytes, hop-by-hop %v, %s", n, hbh, name)
				require.Equal(t, largest, most, "fragMax: the largest fragment's IPv6 length")
				requireUDP6Valid(t, got)
				require.Zero(t, r.Mem())
				require.Zero(t, r.Pending())
				require.Empty(t, st.Snapshot().Drops)
			}
		}
	}
}

// RFC 5722: a fragment overlapping another drops the whole datagram; an
// exact duplicate is dropped alone (as Linux).
func TestOverlap6DropsTheDatagram(t *testing.T) {
	r, _, st := newR(Config{})
	want := datagram6(t, 4000, false)
	frags := fragments6(t, want, 9, 1232)
	// a fragment of the same datagram starting 8 bytes into the first one's data
	bad := fragments6(t, want, 9, 1224)[1]
	ip := packet.IPv6(bad[packet.EthernetHeaderLen:])
	at, _, _ := ip.FragmentAt()
	packet.IPv6Fragment(ip[at:]).Encode(&packet.IPv6FragmentFields{NextHeader: packet.ProtoUDP, Offset: 8, More: true, ID: 9})
	got, _ := feed6(r, st, [][]byte{frags[0], frags[1], bad, frags[2], frags[3]})
	require.Nil(t, got, "the datagram is dropped")
	require.EqualValues(t, 3, st.Dropped(stats.FragOverlap), "the two held and the overlapping one")
	require.EqualValues(t, 1, r.Pending(), "what came after starts a new queue that never completes")

	r, _, st = newR(Config{})
	got, _ = feed6(r, st, [][]byte{frags[0], frags[1], frags[1], frags[2], frags[3]})
	require.Equal(t, want, got)
	require.EqualValues(t, 1, st.Dropped(stats.FragDup))
}

func TestOversizeAndMalformed6(t *testing.T) {
	r, _, st := newR(Config{})
	frags := fragments6(t, datagram6(t, 3000, false), 5, 1232)
	// a fragment claiming data beyond 65535 bytes of payload
	f := append([]byte(nil), frags[1]...)
	ip := packet.IPv6(f[packet.EthernetHeaderLen:])
	at, _, _ := ip.FragmentAt()
	packet.IPv6Fragment(ip[at:]).Encode(&packet.IPv6FragmentFields{NextHeader: packet.ProtoUDP, Offset: 65528 - 8, More: true, ID: 5})
	d, _ := r.Add6(f, st)
	require.Nil(t, d)
	require.EqualValues(t, 1, st.Dropped(stats.FragOversize))

	// a fragment but the last whose data is not a multiple of 8
	f = append([]byte(nil), frags[0][:len(frags[0])-3]...)
	ip = packet.IPv6(f[packet.EthernetHeaderLen:])
	ip.SetPayloadLen(ip.PayloadLen() - 3)
	d, _ = r.Add6(f, st)
	require.Nil(t, d)
	require.EqualValues(t, 1, st.Dropped(stats.BadIPHeader))
	require.Zero(t, r.Pending())
}

// FuzzReassemble6 feeds IPv6 fragments cut from the input (offsets,
// lengths, flags and identifications as it says, an extension header or
// not before the fragment header) to a small reassembler: it never
// panics, memory stays within the bound, a datagram it hands over is a
// LenValid IPv6 packet with no fragment header, and everything is gone
// after the timeout.
func FuzzReassemble6(f *testing.F) {
	f.Add([]byte{0, 0, 0x01, 0, 185, 1, 0, 0, 185, 0, 0x20, 185, 185, 0, 0, 0, 185, 10})
	f.Add([]byte{1, 0, 0x01, 0, 40, 1, 0, 0x08, 5, 40, 1, 0, 0x20, 0, 40})
	f.Fuzz(func(t *testing.T, b []byte) {
		const bound = 16 << 10
		r, clk, st := newR(Config{HighThresh: bound})
		frame := make([]byte, packet.EthernetHeaderLen+packet.IPv6HeaderLen+8+packet.IPv6FragmentLen+2048)
		for len(b) >= 5 {
			id, om, n, hbh := b[0]&3, uint16(b[1])<<8|uint16(b[2]), int(b[3])<<3|int(b[4]&7), b[0]&4 != 0
			b = b[5:]
			n = min(n, 2048)
			ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
			at := packet.IPv6HeaderLen
			next := uint8(packet.ProtoFragment6)
			if hbh {
				next = packet.ProtoHopByHop
				copy(ip[at:], []byte{packet.ProtoFragment6, 0, 1, 4, 0, 0, 0, 0})
				at += 8
			}
			ip.Encode(&packet.IPv6Fields{PayloadLen: uint16(at - packet.IPv6HeaderLen + packet.IPv6FragmentLen + n), NextHeader: next, HopLimit: 64, Src: [16]byte{0xfd, 15: 1}, Dst: [16]byte{0xfd, 15: 2}})
			fh := packet.IPv6Fragment(ip[at:])
			fh.Encode(&packet.IPv6FragmentFields{NextHeader: packet.ProtoUDP, Offset: int(om &^ 7), More: om&1 != 0, ID: uint32(id)})
			ip = ip[:packet.IPv6HeaderLen+int(ip.PayloadLen())]
			if fh.Offset() == 0 && !fh.More() {
				continue // an atomic fragment never comes here
			}
			if d, _ := r.Add6(frame[:packet.EthernetHeaderLen+len(ip)], st); d != nil {
				whole := packet.IPv6((*d)[packet.EthernetHeaderLen:])
				if !whole.LenValid() || len(whole) != packet.IPv6HeaderLen+int(whole.PayloadLen()) || whole.IsFragment() {
					t.Fatalf("bad datagram handed over: % x", whole[:packet.IPv6HeaderLen])
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

// RFC 7112: a first fragment that does not hold the whole header chain
// (here 8 bytes of a TCP header) is dropped, counted as truncated.
func TestFirstFragment6WithoutHeaderChain(t *testing.T) {
	r, _, st := newR(Config{})
	frame := datagram6(t, 100, false)
	packet.IPv6(frame[packet.EthernetHeaderLen:])[6] = packet.ProtoTCP
	f := make([]byte, packet.EthernetHeaderLen+packet.IPv6HeaderLen+packet.IPv6FragmentLen+8)
	copy(f, frame[:packet.EthernetHeaderLen])
	packet.PutFragment6(f[packet.EthernetHeaderLen:], packet.IPv6(frame[packet.EthernetHeaderLen:]), packet.IPv6HeaderLen, 6, 0, 8, true, 1)
	d, _ := r.Add6(f, st)
	require.Nil(t, d)
	require.EqualValues(t, 1, st.Dropped(stats.Truncated))
	require.Zero(t, r.Pending())
}
