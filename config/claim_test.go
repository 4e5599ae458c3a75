package config

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClaim takes given addresses of both families through the one claim:
// each family's subnet, reserved addresses, gateway and taken set.
func TestClaim(t *testing.T) {
	for _, tc := range []struct {
		name, ip string
		prefix   string // the interface's prefix when claimed
		msg      string // else the error
	}{
		{name: "ipv4", ip: "172.20.0.9", prefix: "172.20.0.9/24"},
		{name: "ipv4 last host", ip: "172.20.0.254", prefix: "172.20.0.254/24"},
		{name: "ipv4 outside", ip: "172.21.0.9", msg: `endpoint "a": ip 172.21.0.9 is outside network "front" (172.20.0.0/24)`},
		{name: "ipv4 network address", ip: "172.20.0.0", msg: `endpoint "a": ip 172.20.0.0 is the network address of network "front" (172.20.0.0/24)`},
		{name: "ipv4 broadcast", ip: "172.20.0.255", msg: `endpoint "a": ip 172.20.0.255 is the broadcast address of network "front" (172.20.0.0/24)`},
		{name: "ipv4 gateway", ip: "172.20.0.1", msg: `endpoint "a": ip 172.20.0.1 is the gateway of network "front"`},
		{name: "ipv4 taken", ip: "172.20.0.7", msg: `endpoint "a": ip 172.20.0.7 is already taken by endpoint "b"`},
		{name: "ipv6", ip: "fd00:20::9", prefix: "fd00:20::9/64"},
		{name: "ipv6 all ones", ip: "fd00:20::ffff:ffff:ffff:ffff", prefix: "fd00:20::ffff:ffff:ffff:ffff/64"},
		{name: "ipv6 outside", ip: "fd00:21::9", msg: `endpoint "a": ip6 fd00:21::9 is outside network "front" (fd00:20::/64)`},
		{name: "ipv6 anycast", ip: "fd00:20::", msg: `endpoint "a": ip6 fd00:20:: is the subnet-router anycast address of network "front" (fd00:20::/64)`},
		{name: "ipv6 gateway", ip: "fd00:20::1", msg: `endpoint "a": ip6 fd00:20::1 is the gateway6 of network "front"`},
		{name: "ipv6 taken", ip: "fd00:20::7", msg: `endpoint "a": ip6 fd00:20::7 is already taken by endpoint "b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &parser{loc: &locator{tables: map[string]int{"endpoint[0]": 7}}, what: map[string]string{}}
			n := &netState{Network: &Network{
				Name:    "front",
				Subnet:  netip.MustParsePrefix("172.20.0.0/24"),
				Gateway: netip.MustParseAddr("172.20.0.1"),
				Subnet6: netip.MustParsePrefix("fd00:20::/64"), Gateway6: netip.MustParseAddr("fd00:20::1"),
			}, taken: map[netip.Addr]string{
				netip.MustParseAddr("172.20.0.7"): `endpoint "b"`,
				netip.MustParseAddr("fd00:20::7"): `endpoint "b"`,
			}}
			f := ifState{Interface: &Interface{}, s: p.scope("endpoint[0]", `endpoint "a"`), net: n, owner: `endpoint "a"`}
			ip := netip.MustParseAddr(tc.ip)
			claim(f, ip)
			if tc.msg != "" {
				require.Len(t, p.errs, 1)
				require.Equal(t, tc.msg, p.errs[0].Msg)
				require.Equal(t, 7, p.errs[0].Line)
				require.False(t, f.Prefix.IsValid() || f.Prefix6.IsValid(), "nothing claimed")
				return
			}
			require.Empty(t, p.errs)
			require.Equal(t, `endpoint "a"`, n.taken[ip])
			got, other := f.Prefix, f.Prefix6
			if ip.Is6() {
				got, other = other, got
			}
			require.Equal(t, tc.prefix, got.String())
			require.False(t, other.IsValid(), "the other family's prefix is left alone")
		})
	}
}
