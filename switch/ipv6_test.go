package vswitch

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// TestPortSecurityConfiguredIPv6: a port with an IPv6 address of its own
// (ip6) may send from it and advertise it, besides its link-local address;
// every other global source, a neighbour's included, is still dropped, and
// an endpoint without ip6 gains nothing from another's.
func TestPortSecurityConfiguredIPv6(t *testing.T) {
	const own6, peer6 = "fd00:20::5", "fd00:20::2"
	rig := func(t *testing.T, ip6 string) (*rig, *Port) {
		r := newRig(t, 2, Config{})
		s := &sink{}
		pc := PortConfig{Name: "s", Secure: true, MAC: mac(5), IP: secIP}
		if ip6 != "" {
			pc.IP6 = netip.MustParseAddr(ip6).As16()
		}
		p, err := r.sw.AddPort(pc, s)
		require.NoError(t, err)
		r.ports, r.sinks = append(r.ports, p), append(r.sinks, s)
		return r, p
	}
	pass := map[string][]byte{
		"echo from ip6":              icmp6(t, own6, peer6, layers.ICMPv6TypeEchoRequest, nil),
		"NS from ip6":                icmp6(t, own6, "ff02::1:ff00:2", layers.ICMPv6TypeNeighborSolicitation, ndOpt(naBody(peer6), 1, mac(5))),
		"NA for ip6":                 icmp6(t, own6, peer6, layers.ICMPv6TypeNeighborAdvertisement, ndOpt(naBody(own6), 2, mac(5))),
		"NA for ip6 from link-local": icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, naBody(own6)),
		"UDP from ip6":               udp6(t, own6, peer6, 4000, 5000),
		"link-local still allowed":   icmp6(t, ownLL, peer6, layers.ICMPv6TypeEchoRequest, nil),
	}
	for name, f := range pass {
		t.Run("passes/"+name, func(t *testing.T) {
			r, p := rig(t, own6)
			r.sw.Input(p, f, packet.Offload{})
			require.Equal(t, []int{1, 1, 0}, r.delivered())
			require.Empty(t, p.Stats.Snapshot().Drops)
		})
	}
	drop := map[string]struct {
		ip6    string
		frame  []byte
		reason stats.Reason
	}{
		"a neighbour's ip6":            {own6, icmp6(t, peer6, own6, layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"the gateway6":                 {own6, icmp6(t, "fd00:20::1", peer6, layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"NA for a neighbour's ip6":     {own6, icmp6(t, own6, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, naBody(peer6)), stats.SpoofedND},
		"RA from ip6":                  {own6, icmp6(t, own6, "ff02::1", layers.ICMPv6TypeRouterAdvertisement, nil), stats.RAGuard},
		"ip6 source on a v4-only port": {"", icmp6(t, own6, peer6, layers.ICMPv6TypeEchoRequest, nil), stats.SpoofedIPv6},
		"NA for :: on a v4-only port":  {"", icmp6(t, ownLL, "ff02::1", layers.ICMPv6TypeNeighborAdvertisement, naBody("::")), stats.SpoofedND},
	}
	for name, c := range drop {
		t.Run("dropped/"+name, func(t *testing.T) {
			r, p := rig(t, c.ip6)
			r.sw.Input(p, c.frame, packet.Offload{})
			require.Equal(t, []int{0, 0, 0}, r.delivered())
			require.Equal(t, map[string]uint64{c.reason.String(): 1}, p.Stats.Snapshot().Drops)
		})
	}
}
