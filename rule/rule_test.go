package rule

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// A listed rule goes through JSON and back unchanged, its enums as names.
func TestListedJSON(t *testing.T) {
	in := Listed{Rule: Rule{Hook: Prerouting, Action: DNAT, Comment: "publish web 8080:80/tcp",
		Match: Match{Dst: netip.MustParsePrefix("10.250.0.2/32"), Proto: "tcp", Dport: Ports{8080, 8080},
			NotIn: []string{"secure"}, State: New | DNATed},
		ToAddr: netip.MustParseAddr("172.20.0.10"), ToPort: 80}, Family: FamilyIPv4, Position: 3, Packets: 5, Bytes: 300}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, `{"hook":"prerouting","action":"dnat","match":{"dst":"10.250.0.2/32","proto":"tcp",
		"dport":[8080,8080],"not_in":["secure"],"state":["NEW","DNAT"]},"to_addr":"172.20.0.10","to_port":80,
		"comment":"publish web 8080:80/tcp","family":"ipv4","position":3,"packets":5,"bytes":300}`, string(b))
	var out Listed
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, in, out)

	require.Error(t, json.Unmarshal([]byte(`{"hook":"nat"}`), &out))
	require.Error(t, json.Unmarshal([]byte(`{"action":"allow"}`), &out))
	require.Error(t, json.Unmarshal([]byte(`{"match":{"state":["UNTRACKED"]}}`), &out))
	require.Error(t, json.Unmarshal([]byte(`{"family":"inet6"}`), &out))
}

// A rule's family is what its addresses and protocol say: IPv4, IPv6,
// both when it names none, and mixed (refused by nat) when they disagree.
func TestFamily(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	for _, tc := range []struct {
		r    Rule
		want Family
	}{
		{Rule{}, FamilyAny},
		{Rule{Match: Match{In: "front", Proto: "tcp"}}, FamilyAny},
		{Rule{Match: Match{Src: p("172.20.0.0/24")}}, FamilyIPv4},
		{Rule{Match: Match{Proto: "icmp"}}, FamilyIPv4},
		{Rule{Match: Match{Dst: p("fd00::/64")}}, FamilyIPv6},
		{Rule{Match: Match{Proto: "icmpv6"}}, FamilyIPv6},
		{Rule{ToAddr: a("fd00::5"), ToPort: 80}, FamilyIPv6},
		{Rule{Match: Match{Src: p("172.20.0.0/24")}, ToAddr: a("fd00::5")}, FamilyMixed},
		{Rule{Match: Match{Dst: p("fd00::/64"), Proto: "icmp"}}, FamilyMixed},
	} {
		require.Equal(t, tc.want, tc.r.Family(), "%+v", tc.r)
	}
	r := Rule{Action: DNAT, ToAddr: a("fd00::5"), ToPort: 80}
	require.Equal(t, "[fd00::5]:80", r.Target())
}

func TestSpec(t *testing.T) {
	r := Rule{Hook: Forward, Action: Reject, Comment: "rule line 12", Line: 12,
		Match: Match{Src: netip.MustParsePrefix("172.20.0.0/24"), In: "front", NotIn: []string{"lab"}, Out: "back",
			Proto: "tcp", Sport: Ports{1000, 2000}, Dport: Ports{5432, 5432}, State: New}}
	require.Equal(t, `-A FORWARD -s 172.20.0.0/24 -i front ! -i lab -o back -p tcp --sport 1000:2000 --dport 5432 `+
		`-m conntrack --ctstate NEW -j REJECT --reject-with icmp-port-unreachable/tcp-reset -m comment --comment "rule line 12"`, r.String())
	m := Rule{Hook: Postrouting, Action: SNAT, ToPort: 4000}
	require.Equal(t, ":4000", m.Target())
	require.Equal(t, "hook-9", Hook(9).String())
	require.Equal(t, []Hook{Prerouting, Input, Forward, Output, Postrouting}, Hooks())
}
