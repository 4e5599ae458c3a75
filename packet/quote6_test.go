package packet

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// QuotedUpper walks the extension headers of a packet cut short (a quote)
// without reading past what is there.
func TestQuotedUpper(t *testing.T) {
	b := make([]byte, IPv6HeaderLen+8+8)
	IPv6(b).Encode(&IPv6Fields{PayloadLen: 1000, NextHeader: ProtoHopByHop, HopLimit: 64})
	b[IPv6HeaderLen] = ProtoUDP // hop-by-hop, 8 bytes, then UDP
	proto, off, ok := IPv6(b).QuotedUpper()
	require.True(t, ok)
	require.Equal(t, uint8(ProtoUDP), proto)
	require.Equal(t, IPv6HeaderLen+8, off)

	b[IPv6HeaderLen+1] = 3 // a 32-byte header: beyond the quote
	_, _, ok = IPv6(b).QuotedUpper()
	require.False(t, ok)
	_, _, ok = IPv6(b[:IPv6HeaderLen-1]).QuotedUpper()
	require.False(t, ok)
}

func TestChainFits6(t *testing.T) {
	require.True(t, ChainFits6(make([]byte, 8), ProtoUDP))
	require.False(t, ChainFits6(make([]byte, 8), ProtoTCP))
	require.True(t, ChainFits6(make([]byte, 20), ProtoTCP))
	// destination options (8 bytes) then UDP: 16 bytes needed
	b := []byte{ProtoUDP, 0, 1, 4, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	require.True(t, ChainFits6(b, ProtoDstOpts6))
	require.False(t, ChainFits6(b[:12], ProtoDstOpts6))
	require.False(t, ChainFits6(b[:1], ProtoDstOpts6))
}
