package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// dual is a network front with subnet6 at lines 2-5 and an endpoint a on
// it at lines 6-8; cases add from line 9.
const dual = `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
subnet6 = "fd00:20::/64"
[[endpoint]]
name = "a"
network = "front"
`

func TestIPv6Resolved(t *testing.T) {
	p := parse(t, dual+`ip6 = "fd00:20::9"
[[endpoint]]
name = "b"
network = "front"
[[endpoint]]
name = "c"
[[endpoint.interface]]
network = "front"
[[network]]
name = "back"
subnet = "172.21.0.0/24"
subnet6 = "2001:db8:1::/48"
gateway6 = "2001:db8:1::fe"
[[endpoint]]
name = "d"
network = "back"
[[network]]
name = "v4"
subnet = "172.22.0.0/24"
[[endpoint]]
name = "e"
network = "v4"
`)
	front, back, v4 := p.Network("front"), p.Network("back"), p.Network("v4")
	require.Equal(t, "fd00:20::/64", front.Subnet6.String())
	require.Equal(t, addr("fd00:20::1"), front.Gateway6, "default gateway6 is the subnet's ::1")
	require.Equal(t, addr("2001:db8:1::fe"), back.Gateway6)
	require.False(t, v4.Subnet6.IsValid())
	got := map[string]string{}
	for _, e := range p.Endpoints {
		ifc := e.Interfaces[0]
		got[e.Name] = ifc.Prefix6.String() + " via " + ifc.Gateway6.String()
		if ifc.Prefix6.IsValid() {
			require.Equal(t, ifc.IP6, ifc.Prefix6.Addr())
		}
	}
	// a's given address is claimed first; the others take the lowest free
	// after the gateway, in file order.
	require.Equal(t, map[string]string{
		"a": "fd00:20::9/64 via fd00:20::1",
		"b": "fd00:20::2/64 via fd00:20::1",
		"c": "fd00:20::3/64 via fd00:20::1",
		"d": "2001:db8:1::1/48 via 2001:db8:1::fe",
		"e": "invalid Prefix via invalid IP",
	}, got)

	var out bytes.Buffer
	require.NoError(t, p.Write(&out))
	require.Contains(t, out.String(), "172.20.0.0/24,fd00:20::/64")
	require.Contains(t, out.String(), "172.20.0.2/24,fd00:20::9/64")
	require.Contains(t, out.String(), "172.20.0.1,fd00:20::1")

	js, err := json.Marshal(p)
	require.NoError(t, err)
	require.Contains(t, string(js), `"subnet6":"fd00:20::/64","gateway6":"fd00:20::1"`)
	require.Contains(t, string(js), `"ip6":"fd00:20::9","prefix6":"fd00:20::9/64","gateway6":"fd00:20::1"`)
	// The running plan written back (live changes, the state file) keeps
	// every IPv6 address, and so compares equal.
	again, err := ParseLive(p.Source(), "source")
	require.NoError(t, err)
	require.Equal(t, p.Networks, again.Networks)
	require.Equal(t, p.Endpoints, again.Endpoints)
	d, err := Compare(p, again)
	require.NoError(t, err)
	require.True(t, d.Empty(), "%v", changes(d))

	var back2 Plan
	require.NoError(t, json.Unmarshal(js, &back2))
	require.Equal(t, p.Endpoints, back2.Endpoints)
	require.Equal(t, p.Networks, back2.Networks)
}

func TestIPv6Rejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		line int
		msg  string
	}{
		{"subnet6 not IPv6", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"10.1.0.0/24\"\n", 12, `network "b": subnet6 "10.1.0.0/24" is not an IPv6 prefix`},
		{"subnet6 longer than /64", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00:1::/80\"\n", 12, "the prefix length must be between /16 and /64"},
		{"subnet6 host bits", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00:1::5/64\"\n", 12, "has host bits set: did you mean fd00:1::/64?"},
		{"subnet6 link-local", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fe80::/64\"\n", 12, "is neither unique local (fc00::/7) nor global unicast (2000::/3)"},
		{"subnet6 overlaps", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00::/16\"\n", 12, `network "b": subnet6 fd00::/16 overlaps network "front" (fd00:20::/64)`},
		{"gateway6 outside", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00:1::/64\"\ngateway6 = \"fd00:2::1\"\n", 13, "gateway6 fd00:2::1 is outside subnet6 fd00:1::/64"},
		{"gateway6 anycast", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00:1::/64\"\ngateway6 = \"fd00:1::\"\n", 13, "is the subnet-router anycast address"},
		{"gateway6 without subnet6", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\ngateway6 = \"fd00:1::1\"\n", 12, "gateway6 needs subnet6"},
		{"ip6 not IPv6", dual + "ip6 = \"172.20.0.9\"\n", 9, `endpoint "a": ip6 "172.20.0.9" is not an IPv6 address`},
		{"ip6 outside", dual + "ip6 = \"fd00:21::9\"\n", 9, `ip6 fd00:21::9 is outside network "front" (fd00:20::/64)`},
		{"ip6 is the gateway", dual + "ip6 = \"fd00:20::1\"\n", 9, `ip6 fd00:20::1 is the gateway6 of network "front"`},
		{"ip6 anycast", dual + "ip6 = \"fd00:20::\"\n", 9, "is the subnet-router anycast address"},
		{"ip6 taken", dual + "ip6 = \"fd00:20::5\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\nip6 = \"fd00:20::5\"\n", 13, `ip6 fd00:20::5 is already taken by endpoint "a"`},
		{"ip6 on an IPv4-only network", base + "[[endpoint]]\nname = \"a\"\nnetwork = \"front\"\nip6 = \"fd00::5\"\n", 8, `ip6 fd00::5: network "front" has no subnet6`},
		{"masquerade6 without subnet6", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nmasquerade6 = true\n", 12, "masquerade6 needs subnet6"},
		{"masquerade6 not a boolean", dual + "[[network]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\nsubnet6 = \"fd00:1::/64\"\nmasquerade6 = \"yes\"\n", 13, "masquerade6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml), "net.toml")
			require.Error(t, err)
			var first *Error
			require.True(t, errors.As(err, &first), "%T %v", err, err)
			require.Contains(t, first.Msg, tc.msg, "all: %v", err)
			require.Equal(t, tc.line, first.Line, "%v", err)
		})
	}
}

// TestCompareIPv6: a new subnet6 or gateway6 recreates the network and its
// endpoints (whose addresses and default route change); a new ip6
// recreates the endpoint.
func TestCompareIPv6(t *testing.T) {
	old := mustParse(t, dual)
	d, err := Compare(old, mustParse(t, strings.Replace(dual, `subnet6 = "fd00:20::/64"`, `subnet6 = "fd00:21::/64"`, 1)))
	require.NoError(t, err)
	require.Equal(t, []string{"~ network front (subnet6, gateway6, recreated)", "~ endpoint a (ip6, network front, recreated)"}, changes(d))
	d, err = Compare(old, mustParse(t, strings.Replace(dual, `subnet6 = "fd00:20::/64"`, "subnet6 = \"fd00:20::/64\"\ngateway6 = \"fd00:20::fe\"", 1)))
	require.NoError(t, err)
	require.Equal(t, []string{"~ network front (gateway6, recreated)", "~ endpoint a (ip6, network front, recreated)"}, changes(d), "a moves to ::1, free now")
	d, err = Compare(old, mustParse(t, dual+"ip6 = \"fd00:20::7\"\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"~ endpoint a (ip6, recreated)"}, changes(d))
}

// masquerade6 defaults as Docker decides: true for a unique local
// subnet6, false for a global one (routed as it is); either may be set.
func TestMasquerade6(t *testing.T) {
	p := parse(t, dual+`[[network]]
name = "glob"
subnet = "172.21.0.0/24"
subnet6 = "2001:db8:1::/64"
[[network]]
name = "ulaoff"
subnet = "172.22.0.0/24"
subnet6 = "fd00:22::/64"
masquerade6 = false
[[network]]
name = "globon"
subnet = "172.23.0.0/24"
subnet6 = "2001:db8:2::/64"
masquerade6 = true
[[network]]
name = "v4"
subnet = "172.24.0.0/24"
`)
	got := map[string]bool{}
	for _, n := range p.Networks {
		got[n.Name] = n.Masquerade6
	}
	require.Equal(t, map[string]bool{"front": true, "glob": false, "ulaoff": false, "globon": true, "v4": false}, got)
	changed := *p.Network("front")
	changed.Masquerade6 = false
	require.Equal(t, []string{"masquerade6"}, networkFields(*p.Network("front"), changed))
	require.Contains(t, string(NetworkSource(*p.Network("front"))), "masquerade6 = true\n")
}

// [[rule]] src, dst and to take IPv6 (an address alone is a /128), and
// proto icmpv6.
func TestIPv6Rules(t *testing.T) {
	p := parse(t, dual+`[[rule]]
hook = "forward"
src = "fd00:20::/64"
dst = "2001:db8::7"
proto = "icmpv6"
action = "drop"
[[rule]]
hook = "prerouting"
dst = "fd00:ff::2"
proto = "tcp"
dport = 8443
action = "dnat"
to = "[fd00:20::9]:443"
`)
	require.Len(t, p.Rules, 2)
	require.Equal(t, "fd00:20::/64", p.Rules[0].Src.String())
	require.Equal(t, "2001:db8::7/128", p.Rules[0].Dst.String())
	require.Equal(t, "icmpv6", p.Rules[0].Proto)
	require.Equal(t, "[fd00:20::9]:443", p.Rules[1].To)
}
