package gso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// Largest payloads whose super-frame still fits the IP length fields, with
// the TCP timestamps option.
const (
	max4 = 0xffff - 20 - 32
	max6 = 0xffff - 32
)

// variants of the offload header that must all segment a super-frame the
// same way: as Linux hands it over, without VNET_NEEDS_CSUM (the checksum
// field then holds anything), and with the ECN bit.
func variants(f []byte, o packet.Offload) map[string]struct {
	f []byte
	o packet.Offload
} {
	noCsum := bytes.Clone(f)
	binary.BigEndian.PutUint16(noCsum[o.CsumStart+o.CsumOffset:], 0xdead)
	ecn := o
	ecn.GSOType |= packet.GSOECN
	return map[string]struct {
		f []byte
		o packet.Offload
	}{
		"partial": {f, o},
		"no-csum": {noCsum, packet.Offload{GSOType: o.GSOType, GSOSize: o.GSOSize}},
		"ecn":     {f, ecn},
	}
}

func TestSegment(t *testing.T) {
	for _, s := range []struct {
		name string
		spec
	}{
		{"v4/10KiB", spec{payload: 10 << 10, tsOpt: true, psh: true}},
		{"v4/multiple", spec{payload: 1448 * 20, tsOpt: true, fin: true, psh: true}},
		{"v4/max", spec{payload: max4, tsOpt: true, fin: true, psh: true, cwr: true, seq: 1e9, id: 999}},
		{"v4/no-options", spec{payload: 20000, psh: true}},
		{"v4/ip-options", spec{payload: 12345, ipOpts: true, tsOpt: true, cwr: true}},
		{"v4/vlan", spec{payload: 30000, vlan: layers.EthernetTypeDot1Q, tsOpt: true, fin: true}},
		{"v4/qinq", spec{payload: 30000, vlan: layers.EthernetTypeQinQ, tsOpt: true}},
		{"v4/one-byte", spec{payload: 1, tsOpt: true, fin: true, psh: true, cwr: true}},
		{"v4/fits-one", spec{payload: 1448, tsOpt: true, psh: true}},
		{"v4/empty", spec{payload: 0, tsOpt: true, fin: true}},
		{"v4/wrap", spec{payload: 50000, tsOpt: true, seq: 0xffffff00, id: 0xfffe}},
		{"v4/mss-1", spec{payload: 50, mss: 1, fin: true, psh: true, cwr: true}},
		{"v4/mss-9000", spec{payload: max4, mss: 9000, tsOpt: true}},
		{"v4/mss-max", spec{payload: 30000, mss: 0xffff, tsOpt: true, fin: true}},
		{"v6/10KiB", spec{v6: true, payload: 10 << 10, tsOpt: true, psh: true}},
		{"v6/max", spec{v6: true, payload: max6, tsOpt: true, fin: true, psh: true, cwr: true, seq: 0xfffff000}},
		{"v6/vlan", spec{v6: true, vlan: layers.EthernetTypeDot1Q, payload: 40000, tsOpt: true}},
		{"udp4/10KiB", spec{udp: true, payload: 10 << 10}},
		{"udp4/max", spec{udp: true, payload: 0xffff - 28, id: 0xfff0}},
		{"udp4/multiple", spec{udp: true, payload: 1448 * 7}},
		{"udp4/vlan", spec{udp: true, vlan: layers.EthernetTypeDot1Q, payload: 20001, mss: 1472}},
		{"udp4/fits-one", spec{udp: true, payload: 1000}},
		{"udp6/10KiB", spec{udp: true, v6: true, payload: 10<<10 + 1}},
		{"udp6/max", spec{udp: true, v6: true, payload: 0xffff - 8, mss: 1452}},
	} {
		t.Run(s.name, func(t *testing.T) {
			frame, o := build(t, s.spec)
			var first [][]byte
			for name, v := range variants(frame, o) {
				orig := bytes.Clone(v.f)
				// Exactly the scratch the doc asks for.
				scratch := make([]byte, min(len(v.f), int(o.HdrLen)+int(o.GSOSize)))
				emit, got := collect()
				require.NoError(t, Segment(v.f, v.o, scratch, emit), name)
				require.Equal(t, orig, v.f, "%s: input frame modified", name)
				checkSegments(t, s.spec, frame, o, *got)
				if first == nil {
					first = *got
				} else {
					require.Equal(t, first, *got, "%s: not the same segments", name)
				}
			}
		})
	}
}

// checkSegments checks segs against the super-frame they were cut from.
func checkSegments(t *testing.T, s spec, frame []byte, o packet.Offload, segs [][]byte) {
	t.Helper()
	hdr, size := int(o.HdrLen), int(o.GSOSize)
	want := max(1, (s.payload+size-1)/size)
	require.Len(t, segs, want, "segment count")
	var all []byte
	for i, seg := range segs {
		last := i == len(segs)-1
		n := size
		if last {
			n = s.payload - i*size
		}
		require.Len(t, seg, hdr+n, "segment %d length", i)
		d := decode(t, seg)
		l4, pl := wire(t, seg)
		require.Equal(t, int(o.CsumStart), l4)
		require.Equal(t, pl, d.payload)
		all = append(all, pl...)

		// Every header byte is the super-frame's but for the fields
		// segmentation sets, checked here, and the checksums, which
		// wire and decode verified.
		exp := bytes.Clone(frame[:hdr])
		l3 := netOffset(frame)
		if d.ip4 != nil {
			require.Equal(t, s.id+uint16(i), d.ip4.Id, "IPv4 ID")
			require.Equal(t, hdr+n-l3, int(d.ip4.Length))
			binary.BigEndian.PutUint16(exp[l3+2:], uint16(hdr+n-l3))
			binary.BigEndian.PutUint16(exp[l3+4:], s.id+uint16(i))
			binary.BigEndian.PutUint16(exp[l3+10:], binary.BigEndian.Uint16(seg[l3+10:]))
		} else {
			require.Equal(t, hdr+n-l3-40, int(d.ip6.Length))
			binary.BigEndian.PutUint16(exp[l3+4:], uint16(hdr+n-l3-40))
		}
		binary.BigEndian.PutUint16(exp[l4+int(o.CsumOffset):], binary.BigEndian.Uint16(seg[l4+int(o.CsumOffset):]))
		if s.udp {
			require.Equal(t, 8+n, int(d.udp.Length))
			binary.BigEndian.PutUint16(exp[l4+4:], uint16(8+n))
		} else {
			require.Equal(t, s.seq+uint32(i*size), d.tcp.Seq, "seq of segment %d", i)
			require.Equal(t, s.fin && last, d.tcp.FIN, "FIN on segment %d", i)
			require.Equal(t, s.psh && last, d.tcp.PSH, "PSH on segment %d", i)
			require.Equal(t, s.cwr && i == 0, d.tcp.CWR, "CWR on segment %d", i)
			require.Equal(t, s.cwr, d.tcp.ECE, "ECE on segment %d", i)
			require.True(t, d.tcp.ACK)
			binary.BigEndian.PutUint32(exp[l4+4:], s.seq+uint32(i*size))
			exp[l4+13] = seg[l4+13]
		}
		require.Equal(t, exp, seg[:hdr], "segment %d headers", i)
	}
	require.True(t, bytes.Equal(frame[hdr:], all), "concatenated payloads differ from the super-frame's")
}

// zeroSum sets the last two payload bytes of a UDP frame so that its
// checksum computes to 0, which must go on the wire as 0xffff.
func zeroSum(f []byte, l4 int) {
	binary.BigEndian.PutUint16(f[len(f)-2:], 0)
	binary.BigEndian.PutUint16(f[l4+6:], 0)
	s := ^packet.Checksum(f[l4:], pseudo(f, l4, len(f)-l4))
	binary.BigEndian.PutUint16(f[len(f)-2:], 0xffff-s)
}

func TestSegmentUDPZeroChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame, o := build(t, spec{udp: true, v6: v6, payload: 1000})
		zeroSum(frame, int(o.CsumStart))
		emit, got := collect()
		require.NoError(t, Segment(frame, o, make([]byte, len(frame)), emit))
		require.Len(t, *got, 1)
		seg := (*got)[0]
		require.Equal(t, uint16(0xffff), binary.BigEndian.Uint16(seg[o.CsumStart+6:]))
		wire(t, seg)
	}
}

// completeCases are 1500-byte frames with a partial checksum.
func completeCases() map[string]spec {
	return map[string]spec{
		"tcp4":      {payload: 1500 - 14 - 20 - 32, tsOpt: true, psh: true},
		"tcp4-vlan": {payload: 1500 - 18 - 20 - 32, tsOpt: true, vlan: layers.EthernetTypeDot1Q},
		"tcp6":      {v6: true, payload: 1500 - 14 - 40 - 20},
		"udp4":      {udp: true, payload: 1500 - 14 - 20 - 8},
		"udp6":      {udp: true, v6: true, payload: 1500 - 14 - 40 - 8 - 1},
	}
}

// plainCsum turns o into the offload of a frame with only its checksum
// left partial.
func plainCsum(o packet.Offload) packet.Offload {
	return packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: o.CsumStart, CsumOffset: o.CsumOffset}
}

func TestSegmentCompletesChecksum(t *testing.T) {
	for name, s := range completeCases() {
		t.Run(name, func(t *testing.T) {
			want, _ := buildFull(t, s)
			frame, o := build(t, s)
			o = plainCsum(o)
			require.NotEqual(t, want, frame)
			orig := bytes.Clone(frame)
			emit, got := collect()
			require.NoError(t, Segment(frame, o, make([]byte, len(frame)), emit))
			require.Equal(t, orig, frame, "input frame modified")
			require.Len(t, *got, 1)
			require.Equal(t, want, (*got)[0], "gopacket's checksum")
			decode(t, (*got)[0])
			wire(t, (*got)[0])
		})
	}
}

func TestComplete(t *testing.T) {
	for name, s := range completeCases() {
		t.Run(name, func(t *testing.T) {
			want, _ := buildFull(t, s)
			frame, o := build(t, s)
			require.NoError(t, Complete(frame, plainCsum(o)))
			require.Equal(t, want, frame, "completed in place to gopacket's checksum")

			// GSO fields are ignored; without VNET_NEEDS_CSUM nothing is done.
			frame, o = build(t, s)
			require.NoError(t, Complete(frame, o))
			require.Equal(t, want, frame)
			frame, o = build(t, s)
			orig := bytes.Clone(frame)
			o.Flags = 0
			require.NoError(t, Complete(frame, o))
			require.Equal(t, orig, frame)
		})
	}
}

func TestCompleteZeroIsSentAsFFFF(t *testing.T) {
	frame, o := build(t, spec{udp: true, payload: 200})
	l4 := int(o.CsumStart)
	zeroSum(frame, l4)
	binary.BigEndian.PutUint16(frame[l4+6:], ^packet.Checksum(nil, pseudo(frame, l4, len(frame)-l4)))
	require.NoError(t, Complete(frame, plainCsum(o)))
	require.Equal(t, uint16(0xffff), binary.BigEndian.Uint16(frame[l4+6:]))
	wire(t, frame)
}

// Checksum completion needs no protocol: it sums from CsumStart whatever
// is there.
func TestCompleteAnyProtocol(t *testing.T) {
	frame := patternBytes(333)
	o := packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: 21, CsumOffset: 300}
	emit, got := collect()
	require.NoError(t, Segment(frame, o, make([]byte, 400), emit))
	require.Len(t, *got, 1)
	// The field's old content counts as the pseudo-header sum.
	require.Equal(t, uint16(0), packet.Checksum((*got)[0][21:], uint32(binary.BigEndian.Uint16(frame[321:]))))
	require.Equal(t, frame[:321], (*got)[0][:321])
	require.Equal(t, frame[323:], (*got)[0][323:])
}

func TestSegmentPlain(t *testing.T) {
	frame, _ := build(t, spec{payload: 5000, tsOpt: true})
	for _, p := range []packet.Offload{{}, {Flags: packet.VnetDataValid}, {GSOType: packet.GSOECN, GSOSize: 9, CsumStart: 9999}} {
		for _, f := range [][]byte{frame, frame[:3], nil} {
			var n int
			err := Segment(f, p, nil, func(b []byte) error {
				n++
				require.Equal(t, len(f), len(b))
				require.Equal(t, cap(f), cap(b))
				if len(f) > 0 {
					require.Same(t, &f[0], &b[0], "plain frame copied")
				}
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, 1, n)
		}
	}
}

func TestSegmentMalformed(t *testing.T) {
	tcp4, o4 := build(t, spec{payload: 5000, tsOpt: true})
	tcp6, o6 := build(t, spec{v6: true, payload: 5000})
	udp4, ou := build(t, spec{udp: true, payload: 5000})
	vlan, ov := build(t, spec{vlan: layers.EthernetTypeDot1Q, payload: 5000})
	big4, ob4 := build(t, spec{payload: max4, tsOpt: true})
	big4 = append(big4, 0)
	big6, ob6 := build(t, spec{v6: true, udp: true, payload: 0xffff - 8})
	big6 = append(big6, 0)

	with := func(f []byte, fix func(f []byte)) []byte {
		f = bytes.Clone(f)
		fix(f)
		return f
	}
	set := func(o packet.Offload, fix func(o *packet.Offload)) packet.Offload {
		fix(&o)
		return o
	}
	cases := []struct {
		name  string
		frame []byte
		o     packet.Offload
	}{
		{"ufo", udp4, set(ou, func(o *packet.Offload) { o.GSOType = packet.GSOUDP })},
		{"type-2", tcp4, set(o4, func(o *packet.Offload) { o.GSOType = 2 })},
		{"type-6", tcp4, set(o4, func(o *packet.Offload) { o.GSOType = 6 })},
		{"type-7f-ecn", tcp4, set(o4, func(o *packet.Offload) { o.GSOType = 0xff })},
		{"gso-size-0", tcp4, set(o4, func(o *packet.Offload) { o.GSOSize = 0 })},
		{"gso-size-0-no-csum", tcp4, packet.Offload{GSOType: packet.GSOTCPv4}},
		{"empty", nil, o4},
		{"ethernet-short", tcp4[:13], o4},
		{"vlan-short", vlan[:17], ov},
		{"qinq-two-tags", with(vlan, func(f []byte) { f[12], f[13], f[16], f[17] = 0x88, 0xa8, 0x81, 0x00 }), ov},
		{"arp", with(tcp4, func(f []byte) { f[12], f[13] = 0x08, 0x06 }), o4},
		{"tcpv4-on-ipv6", tcp6, set(o6, func(o *packet.Offload) { o.GSOType = packet.GSOTCPv4 })},
		{"tcpv6-on-ipv4", tcp4, set(o4, func(o *packet.Offload) { o.GSOType = packet.GSOTCPv6 })},
		{"ipv4-version", with(tcp4, func(f []byte) { f[14] = 0x65 }), o4},
		{"ipv4-ihl-4", with(tcp4, func(f []byte) { f[14] = 0x44 }), o4},
		{"ipv4-ihl-beyond", with(tcp4[:14+40], func(f []byte) { f[14] = 0x4f }), o4},
		{"ipv4-short", tcp4[:14+19], o4},
		{"ipv4-fragment", with(tcp4, func(f []byte) { f[14+6] |= 0x20 }), o4},
		{"ipv4-udp-for-tcp", with(tcp4, func(f []byte) { f[14+9] = packet.ProtoUDP }), o4},
		{"ipv4-tcp-for-udp", with(udp4, func(f []byte) { f[14+9] = packet.ProtoTCP }), ou},
		{"ipv6-version", with(tcp6, func(f []byte) { f[14] = 0x46 }), o6},
		{"ipv6-short", tcp6[:14+39], o6},
		{"ipv6-extension-header", with(tcp6, func(f []byte) { f[14+6] = 0 }), o6},
		{"ipv6-udp-for-tcp", with(tcp6, func(f []byte) { f[14+6] = packet.ProtoUDP }), o6},
		{"tcp-short", tcp4[:14+20+19], o4},
		{"tcp-options-beyond", tcp4[:14+20+31], o4},
		{"tcp-data-offset-4", with(tcp4, func(f []byte) { f[14+20+12] = 0x40 }), o4},
		{"udp-short", udp4[:14+20+7], ou},
		{"csum-start-wrong", tcp4, set(o4, func(o *packet.Offload) { o.CsumStart += 4 })},
		{"csum-start-beyond", tcp4, set(o4, func(o *packet.Offload) { o.CsumStart = 0xffff })},
		{"csum-offset-udp-in-tcp", tcp4, set(o4, func(o *packet.Offload) { o.CsumOffset = 6 })},
		{"csum-offset-tcp-in-udp", udp4, set(ou, func(o *packet.Offload) { o.CsumOffset = 16 })},
		{"ipv4-too-long", big4, ob4},
		{"ipv6-too-long", big6, ob6},
		// Checksum completion only.
		{"csum-start-beyond-plain", tcp4, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: uint16(len(tcp4) + 1)}},
		{"csum-field-beyond-plain", tcp4, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: uint16(len(tcp4) - 10), CsumOffset: 9}},
		{"csum-field-max-plain", tcp4, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff}},
		{"csum-empty-plain", nil, packet.Offload{Flags: packet.VnetNeedsCsum}},
		{"csum-offset-odd-plain", tcp4, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: 34, CsumOffset: 17}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := bytes.Clone(c.frame)
			err := Segment(c.frame, c.o, make([]byte, 1<<17), func([]byte) error {
				t.Fatal("emitted a malformed frame")
				return nil
			})
			require.ErrorIs(t, err, ErrMalformed)
			require.Contains(t, err.Error(), "gso: malformed offload frame: ")
			require.Equal(t, orig, c.frame)
			if !c.o.IsGSO() {
				require.ErrorIs(t, Complete(c.frame, c.o), ErrMalformed)
				require.Equal(t, orig, c.frame)
			}
		})
	}
	// The last good frame of each kind: one byte of each header less
	// above, these pass.
	for _, f := range []struct {
		frame []byte
		o     packet.Offload
	}{{tcp4[:14+20+32], o4}, {udp4[:14+20+8], ou}, {tcp6[:14+40+20], set(o6, func(o *packet.Offload) { o.Flags = 0 })}} {
		require.NoError(t, Segment(f.frame, f.o, make([]byte, 200), func([]byte) error { return nil }))
	}
	require.NoError(t, Complete(tcp4, packet.Offload{Flags: packet.VnetNeedsCsum, CsumStart: uint16(len(tcp4) - 10), CsumOffset: 8}))
}

func TestSegmentScratch(t *testing.T) {
	tcp4, o4 := build(t, spec{payload: 20000, tsOpt: true})
	udp6, o6 := build(t, spec{udp: true, v6: true, payload: 5000})
	small, os := build(t, spec{payload: 1000})
	plain := plainCsum(o4)
	for _, c := range []struct {
		name  string
		frame []byte
		o     packet.Offload
		need  int
	}{
		{"tcp4", tcp4, o4, int(o4.HdrLen) + 1448},
		{"udp6", udp6, o6, int(o6.HdrLen) + 1448},
		{"fits-one", small, os, len(small)},
		{"complete", tcp4, plain, len(tcp4)},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range []int{0, c.need - 1} {
				err := Segment(c.frame, c.o, make([]byte, n), func([]byte) error {
					t.Fatal("emitted with too small a scratch")
					return nil
				})
				require.ErrorIs(t, err, ErrScratch)
			}
			require.NoError(t, Segment(c.frame, c.o, make([]byte, c.need), func([]byte) error { return nil }))
		})
	}
}

func TestSegmentStopsAtEmitError(t *testing.T) {
	frame, o := build(t, spec{payload: 20000, tsOpt: true})
	stop := errors.New("port full")
	for _, c := range []struct {
		o  packet.Offload
		at int
	}{{o, 3}, {plainCsum(o), 1}, {packet.Offload{}, 1}} {
		t.Run(fmt.Sprint(c.o), func(t *testing.T) {
			var n int
			err := Segment(frame, c.o, make([]byte, len(frame)), func([]byte) error {
				n++
				if n == c.at {
					return stop
				}
				return nil
			})
			require.Same(t, stop, err)
			require.Equal(t, c.at, n)
		})
	}
}

func TestSegmentAllocs(t *testing.T) {
	tcp4, o4 := build(t, spec{payload: max4, tsOpt: true, fin: true})
	udp6, o6 := build(t, spec{udp: true, v6: true, payload: max6})
	scratch := make([]byte, len(tcp4))
	var n int
	emit := func([]byte) error { n++; return nil }
	for name, c := range map[string]struct {
		frame []byte
		o     packet.Offload
	}{
		"tcp4-64K":  {tcp4, o4},
		"udp6-64K":  {udp6, o6},
		"complete":  {tcp4, plainCsum(o4)},
		"plain":     {tcp4, packet.Offload{}},
		"malformed": {tcp4, packet.Offload{GSOType: packet.GSOUDP, GSOSize: 1}},
	} {
		allocs := testing.AllocsPerRun(100, func() { _ = Segment(c.frame, c.o, scratch, emit) })
		require.Zero(t, allocs, name)
	}
	require.NotZero(t, n)
	frame, o := build(t, spec{payload: 1434, tsOpt: true})
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = Complete(frame, o) }), "Complete")
}
