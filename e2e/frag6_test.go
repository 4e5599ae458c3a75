package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// frag6Config: front (a ULA subnet6: masquerade6 by default) with f,
// which publishes 53/udp as 5353; an uplink with address6 whose host side
// is a namespace uswitch makes.
func frag6Config(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.254.96.2/30"
host_address = "10.254.96.1/30"
address6 = "fd00:fc::2/64"
host_address6 = "fd00:fc::1/64"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.96.0.0/24"
subnet6 = "fd00:c0::/64"

[[endpoint]]
name = "%[1]s-f"
network = "front"
ip6 = "fd00:c0::10"
publish = ["5353:53/udp"]
`, name)
}

// The IPv6 TestFragmentedUDPThroughNAT: large UDP datagrams, which the
// sender's kernel fragments, go through masquerade6 and to a published
// port whole, both ways: uswitch reassembles them before conntrack (as
// nf_defrag_ipv6), translates them whole and sends them out fragmented
// again, no fragment larger than the largest that came. A packet socket
// on the host side sees every fragment with the uplink's address6, none
// with the endpoint's, none larger than the 1500-byte MTU.
func TestFragmentedUDP6ThroughNAT(t *testing.T) {
	needRoot(t)
	name := prefix("frag6")
	in := start(t, name, writeConfig(t, frag6Config(name)))
	host, ep := name+"-host", name+"-f"
	front := netip.MustParsePrefix("fd00:c0::/64")
	uplink := netip.MustParseAddr("fd00:fc::2")
	hostAddr := netip.MustParseAddr("fd00:fc::1")
	sniff := sniffEtherType(t, host, 0x86dd)

	t.Run("masquerade6", func(t *testing.T) {
		srv := udpSocketOf(t, "udp6", host, "[fd00:fc::1]:9000")
		cli := udpSocketOf(t, "udp6", ep, "[::]:40000")
		bigRoundTrips(t, cli, srv, netip.AddrPortFrom(hostAddr, 9000), netip.AddrPortFrom(uplink, 0), 0) // masqueraded
	})

	t.Run("published port", func(t *testing.T) {
		srv := udpSocketOf(t, "udp6", ep, "[::]:53")
		cli := udpSocketOf(t, "udp6", host, "[fd00:fc::1]:41000")
		bigRoundTrips(t, cli, srv, netip.AddrPortFrom(uplink, 5353), netip.AddrPortFrom(hostAddr, 41000), 7) // DNAT keeps the client's address
	})

	t.Run("a ping6 to the gateway larger than the MTU", func(t *testing.T) {
		// the request arrives in fragments, is reassembled and answered;
		// the router fragments its answer as a host does
		r := probe6(t, ep, "fd00:c0::1", 0, 4000)
		require.True(t, r.reply, "answered: %+v", r)
	})

	// What the host side saw: fragments, all with public addresses, none
	// larger than the MTU.
	frags := map[netip.Addr]int{}
	for _, p := range drainPackets(t, sniff, 40) {
		src := netip.AddrFrom16([16]byte(p[8:24]))
		require.False(t, front.Contains(src), "a packet left the uplink with the private source %v", src)
		require.LessOrEqual(t, len(p), 1500, "a packet from %v larger than the MTU", src)
		if p[6] == 44 { // a fragment header (no atomic fragment is sent here)
			frags[src]++
		}
	}
	t.Logf("fragments seen on the host side, by source: %v", frags)
	// from uswitch: two datagrams masqueraded, two answers from the
	// published port, 5 fragments for 6000 bytes, 42 for 60000
	require.GreaterOrEqual(t, frags[uplink], 2*(5+42), "the host side saw uswitch's fragments")

	for _, p := range in.ports(t) {
		for reason := range p.Drops {
			require.NotContains(t, reason, "frag", "port %s dropped fragments", p.Name)
		}
	}
}
