package trace

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

func frameOf(t *testing.T, proto, src, dst string, sport, dport uint16) []byte {
	t.Helper()
	f, err := Packet{SrcMAC: packet.MAC{2, 0, 0, 0, 0, 1}, DstMAC: packet.MAC{2, 0, 0, 0, 0, 2},
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Sport: sport, Dport: dport, SYN: true}.Build()
	require.NoError(t, err)
	return f
}

func TestFilter(t *testing.T) {
	tcp := frameOf(t, "tcp", "10.0.0.2", "10.1.0.3", 40000, 80)
	icmp := frameOf(t, "icmp", "10.0.0.2", "192.168.1.1", 7, 0)
	arp := packet.PutARP(make([]byte, packet.ARPFrameLen), 1, packet.Broadcast, packet.MAC{2, 0, 0, 0, 0, 1}, [4]byte{10, 0, 0, 2}, packet.MAC{}, [4]byte{10, 0, 0, 1})
	for _, c := range []struct {
		expr           string
		tcp, icmp, arp bool
	}{
		{"", true, true, true},
		{"tcp", true, false, false},
		{"proto icmp", false, true, false},
		{"arp", false, false, true},
		{"host 10.1.0.3", true, false, false},
		{"host 10.0.0.2", true, true, true},
		{"net 192.168.0.0/16", false, true, false},
		{"port 80", true, false, false},
		{"tcp and port 40000 and host 10.0.0.2", true, false, false},
		{"udp and host 10.0.0.2", false, false, false},
	} {
		f, err := ParseFilter(c.expr)
		require.NoError(t, err, c.expr)
		require.Equal(t, c.tcp, f.Match(tcp), "%q tcp", c.expr)
		require.Equal(t, c.icmp, f.Match(icmp), "%q icmp", c.expr)
		require.Equal(t, c.arp, f.Match(arp), "%q arp", c.expr)
	}
	for _, bad := range []string{"host", "host x", "net 10.0.0.1", "port 70000", "proto gre", "or tcp", "tcp and", "foo"} {
		_, err := ParseFilter(bad)
		require.Error(t, err, bad)
	}
}

func TestLiveRateAndBound(t *testing.T) {
	l := NewLive("web", "front", Filter{}, 5)
	f := frameOf(t, "udp", "10.0.0.2", "10.0.0.3", 1, 2)
	require.False(t, l.Wants("front", "api", f), "another port")
	require.False(t, l.Wants("back", "web", f), "another network")
	n := 0
	for range 20 {
		if l.Wants("front", "web", f) {
			n++
		}
	}
	require.Equal(t, 5, n, "the burst is the rate")
	require.EqualValues(t, 15, l.Missed.Load())
	time.Sleep(250 * time.Millisecond)
	require.True(t, l.Wants("front", "web", f), "tokens come back")

	// Done never blocks: a full channel loses the event
	for range cap(l.Events) + 3 {
		l.Done("front", "web", &Recorder{})
	}
	require.Len(t, l.Events, cap(l.Events))
	require.EqualValues(t, 18, l.Missed.Load())
}
