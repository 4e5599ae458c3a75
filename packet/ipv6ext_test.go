package packet

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// frag6Packet builds with gopacket an IPv6 packet with a hop-by-hop
// header, then a fragment header (written by IPv6Fragment.Encode: gopacket
// does not serialize one) with v, then 8 bytes of UDP header and data.
func frag6Packet(t testing.TB, v IPv6FragmentFields) IPv6 {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: a6[:], DstIP: b6[:]}
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Fragment
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	rest := make([]byte, IPv6FragmentLen+16)
	IPv6Fragment(rest).Encode(&v)
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, hbh, gopacket.Payload(rest)))
	return IPv6(buf.Bytes())
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	for _, v := range []IPv6FragmentFields{
		{NextHeader: ProtoUDP, Offset: 0, More: true, ID: 0xdeadbeef},
		{NextHeader: ProtoUDP, Offset: 1232, More: true, ID: 7},
		{NextHeader: ProtoUDP, Offset: 65528, More: false, ID: 1},
	} {
		ip := frag6Packet(t, v)
		require.True(t, ip.LenValid())
		require.True(t, ip.IsFragment())

		// What Encode wrote is what gopacket reads.
		g := gopacket.NewPacket(ip, layers.LayerTypeIPv6, gopacket.Default)
		gf, ok := g.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
		require.True(t, ok, "gopacket finds the fragment header")
		require.EqualValues(t, v.NextHeader, gf.NextHeader)
		require.EqualValues(t, v.Offset/8, gf.FragmentOffset)
		require.Equal(t, v.More, gf.MoreFragments)
		require.Equal(t, v.ID, gf.Identification)

		// The views read it back, walking from the fixed header.
		require.True(t, IsIPv6Ext(ip.NextHeader()))
		hbh := IPv6Ext(ip[IPv6HeaderLen:])
		require.True(t, hbh.Valid(ProtoHopByHop))
		require.Equal(t, 8, hbh.Len(ProtoHopByHop))
		require.EqualValues(t, ProtoFragment6, hbh.NextHeader())
		f := IPv6Fragment(ip[IPv6HeaderLen+8:])
		require.True(t, f.Valid())
		require.True(t, IPv6Ext(f).Valid(ProtoFragment6))
		require.Equal(t, IPv6FragmentLen, IPv6Ext(f).Len(ProtoFragment6))
		require.EqualValues(t, v.NextHeader, f.NextHeader())
		require.Equal(t, v.Offset, f.Offset())
		require.Equal(t, v.More, f.More())
		require.Equal(t, v.ID, f.ID())

		proto, off, ok := ip.Upper()
		require.True(t, ok)
		if v.Offset == 0 {
			require.EqualValues(t, ProtoUDP, proto, "the first fragment holds the upper-layer header")
			require.Equal(t, IPv6HeaderLen+8+IPv6FragmentLen, off)
		} else {
			require.EqualValues(t, ProtoFragment6, proto, "a later fragment has no upper-layer header")
			require.Equal(t, IPv6HeaderLen+8, off)
		}
	}
	require.False(t, IsIPv6Ext(ProtoUDP))
	require.False(t, IsIPv6Ext(ProtoNoNext6))

	// A header longer than what is left does not parse.
	ip := frag6Packet(t, IPv6FragmentFields{NextHeader: ProtoUDP})
	ip[IPv6HeaderLen+1] = 9 // hop-by-hop of 80 bytes
	_, _, ok := ip.Upper()
	require.False(t, ok)
	require.False(t, ip.IsFragment())
	require.False(t, IPv6Ext(ip[len(ip)-1:]).Valid(ProtoFragment6))
	require.False(t, IPv6Fragment(ip[len(ip)-7:]).Valid())
}

func TestIPv6ExtViewsDoNotAllocate(t *testing.T) {
	ip := frag6Packet(t, IPv6FragmentFields{NextHeader: ProtoUDP, Offset: 8, More: true, ID: 3})
	f := IPv6Fragment(ip[IPv6HeaderLen+8:])
	require.Zero(t, testing.AllocsPerRun(100, func() {
		_, _, _ = ip.Upper()
		_ = ip.IsFragment()
		_ = f.Offset() + int(f.ID())
		f.Encode(&IPv6FragmentFields{NextHeader: ProtoUDP, Offset: 8, More: true, ID: 3})
	}))
}

// FuzzIPv6Ext: the walk over any bytes never panics and stops only at an
// upper-layer header, or at a fragment header that is not the first.
func FuzzIPv6Ext(f *testing.F) {
	f.Add([]byte(frag6Packet(f, IPv6FragmentFields{NextHeader: ProtoUDP, More: true, ID: 1})))
	f.Add([]byte(frag6Packet(f, IPv6FragmentFields{NextHeader: ProtoTCP, Offset: 1448, ID: 2})))
	f.Add(echo6Frame(f, 64, true)[EthernetHeaderLen:])
	f.Fuzz(func(t *testing.T, b []byte) {
		ip := IPv6(b)
		if !ip.LenValid() {
			return
		}
		isFrag := ip.IsFragment()
		proto, off, ok := ip.Upper()
		if !ok {
			return
		}
		end := IPv6HeaderLen + int(ip.PayloadLen())
		if off > end {
			t.Fatalf("offset %d beyond the payload's end %d", off, end)
		}
		if proto == ProtoFragment6 {
			if !isFrag || IPv6Fragment(ip[off:end]).Offset() == 0 {
				t.Fatalf("stopped at a fragment header that is the first (or none)")
			}
			// Its fields survive an Encode.
			fr := IPv6Fragment(ip[off:end])
			v := IPv6FragmentFields{NextHeader: fr.NextHeader(), Offset: fr.Offset(), More: fr.More(), ID: fr.ID()}
			fr.Encode(&v)
			if fr.NextHeader() != v.NextHeader || fr.Offset() != v.Offset || fr.More() != v.More || fr.ID() != v.ID {
				t.Fatalf("fragment fields %+v did not survive Encode", v)
			}
			return
		}
		if IsIPv6Ext(proto) {
			t.Fatalf("stopped at extension header %d", proto)
		}
	})
}
