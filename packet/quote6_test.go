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
