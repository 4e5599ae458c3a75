package arp

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// A reply from sender 0.0.0.0 names no neighbour: it creates no entry.
func TestReplyFromZeroSenderNotLearned(t *testing.T) {
	c, _, _ := newCache()
	c.Input(arpFrame(t, packet.ARPReply, hostM, [4]byte{}, gwMAC, gwIP))
	require.Empty(t, c.Entries())
	_, ok := c.Lookup([4]byte{})
	require.False(t, ok)
}
