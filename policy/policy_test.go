package policy

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/rule"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// render is rules as iptables-save lines, as `uswitch check` prints them.
func render(rules []rule.Rule) string {
	var b strings.Builder
	for i := range rules {
		b.WriteString(rules[i].String() + "\n")
	}
	return b.String()
}

// The rule sets of the example configs are kept as golden files (like
// moby's iptables rules), so that a change to the policy shows as a
// readable diff: run go test ./policy -update and review it.
func TestExampleConfigsGolden(t *testing.T) {
	configs, err := filepath.Glob("../config/testdata/*.toml")
	require.NoError(t, err)
	configs = append(configs, "../config/default.toml")
	n := 0
	for _, path := range configs {
		plan, err := config.Load(path)
		if err != nil {
			t.Logf("%s does not validate, no rules: %v", path, err)
			continue
		}
		n++
		rules, err := Compile(plan)
		require.NoError(t, err, path)
		got := render(rules)
		golden := filepath.Join("testdata", strings.TrimSuffix(filepath.Base(path), ".toml")+".golden")
		if *update {
			require.NoError(t, os.MkdirAll("testdata", 0o755))
			require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err, "run go test ./policy -update to create it")
		require.Equal(t, string(want), got, "%s: the policy changed; if that is meant, run go test ./policy -update and review the diff", path)
	}
	require.Equal(t, len(configs), n, "every example config validates")
}

// Compile lists rules in evaluation order: by hook in netfilter's order,
// filter rules before NAT rules, the plan's own first in each group.
func TestCompileOrder(t *testing.T) {
	plan, err := config.Load("../config/testdata/rich.toml")
	require.NoError(t, err)
	rules, err := Compile(plan)
	require.NoError(t, err)
	require.NotEmpty(t, rules)
	for i := 1; i < len(rules); i++ {
		require.LessOrEqual(t, order(&rules[i-1]), order(&rules[i]), "%s before %s", rules[i-1].String(), rules[i].String())
	}
	seenBuiltin := map[int]bool{}
	for i := range rules {
		g := order(&rules[i])
		if rules[i].Line == 0 {
			seenBuiltin[g] = true
		} else {
			require.False(t, seenBuiltin[g], "user rule %s after a built-in of its group", rules[i].String())
		}
	}
}

func TestUserRuleErrors(t *testing.T) {
	for _, r := range []config.Rule{
		{Hook: "nat", Action: "accept"},
		{Hook: "forward", Action: "allow"},
		{Hook: "forward", Action: "accept", State: []string{"untracked"}},
		{Hook: "forward", Action: "accept", State: []string{"dnat"}},
		{Hook: "prerouting", Action: "dnat", To: "fe80::1"},
		{Hook: "prerouting", Action: "dnat", To: "10.0.0.1:0"},
		{Hook: "prerouting", Action: "dnat", To: "10.0.0.1:http"},
	} {
		_, err := Compile(&config.Plan{Rules: []config.Rule{r}})
		require.Error(t, err, "%+v", r)
	}
	rules, err := Compile(&config.Plan{Rules: []config.Rule{{Hook: "postrouting", Action: "snat", To: "10.0.0.1:4000",
		Src: netip.MustParsePrefix("172.20.0.0/24"), State: []string{"new"}, Line: 3}}})
	require.NoError(t, err)
	require.Equal(t, 3, rules[len(rules)-1].Line, "the only postrouting rule comes last")
	require.Equal(t, `-A POSTROUTING -s 172.20.0.0/24 -m conntrack --ctstate NEW -j SNAT --to-source 10.0.0.1:4000 -m comment --comment "rule line 3"`,
		rules[len(rules)-1].String())
}

// A dual-stack plan gets the IPv6 side of Docker's rules (ip6tables'):
// published ports on the uplink's address6 to the endpoint's ip6,
// accepted across isolation, hairpin from the subnet6, masquerade6 of a
// ULA network but not of a global one, the gateway6 as the host; the
// isolation and internal rules name no address and hold for both.
func TestIPv6Rules(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	plan := &config.Plan{
		Uplink: &config.Uplink{Address: pfx("10.250.0.2/30"), HostAddress: pfx("10.250.0.1/30"),
			Address6: pfx("fd00:ff::2/64"), HostAddress6: pfx("fd00:ff::1/64")},
		Networks: []config.Network{
			{Name: "front", Subnet: pfx("172.20.0.0/24"), Gateway: addr("172.20.0.1"), Masquerade: true, Isolate: true,
				Subnet6: pfx("fd00:20::/64"), Gateway6: addr("fd00:20::1"), Masquerade6: true},
			{Name: "pub", Subnet: pfx("172.21.0.0/24"), Gateway: addr("172.21.0.1"), Masquerade: true, Isolate: true,
				Subnet6: pfx("2001:db8:1::/64"), Gateway6: addr("2001:db8:1::1")},
			{Name: "secret", Subnet: pfx("172.22.0.0/24"), Gateway: addr("172.22.0.1"), Internal: true, Isolate: true,
				Subnet6: pfx("fd00:22::/64"), Gateway6: addr("fd00:22::1"), Masquerade6: true},
		},
		Endpoints: []config.Endpoint{{Name: "web", Interfaces: []config.Interface{{Network: "front", IP: addr("172.20.0.10"), IP6: addr("fd00:20::10")}},
			Publish: []config.Publish{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}}}},
	}
	rules, err := Compile(plan)
	require.NoError(t, err)
	got := render(rules)
	for _, want := range []string{
		`-A PREROUTING -d fd00:ff::2/128 ! -i secret -p tcp --dport 8080 -j DNAT --to-destination [fd00:20::10]:80 -m comment --comment "publish web 8080:80/tcp"`,
		`-A FORWARD -d fd00:20::10/128 ! -i secret -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT -m comment --comment "publish web 8080:80/tcp"`,
		`-A POSTROUTING -s fd00:20::/64 -d fd00:20::10/128 -o front -p tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE -m comment --comment "hairpin web 8080:80/tcp"`,
		`-A POSTROUTING -s fd00:20::/64 -o uplink -j MASQUERADE -m comment --comment "masquerade6 front"`,
		`-A PREROUTING -d fd00:20::1/128 -i front -p tcp --dport 8080 -j DNAT --to-destination [fd00:20::10]:80 -m comment --comment "publish web 8080:80/tcp at gateway front"`,
		`-A PREROUTING -d 2001:db8:1::1/128 -i pub -p udp -j DNAT --to-destination fd00:ff::1 -m comment --comment "host gateway pub"`,
		`-A POSTROUTING -s 2001:db8:1::/64 -d fd00:ff::1/128 -o uplink -m conntrack --ctstate DNAT -j MASQUERADE -m comment --comment "host gateway pub"`,
		`-A FORWARD -i front -o pub -j DROP -m comment --comment "isolation"`,
		`-A FORWARD -i secret -o uplink -j DROP -m comment --comment "internal"`,
	} {
		require.Contains(t, got, want+"\n")
	}
	for _, not := range []string{"masquerade6 pub", "masquerade6 secret", "fd00:22::1/128"} {
		require.NotContains(t, got, not)
	}
	for i := range rules {
		require.NotEqual(t, rule.FamilyMixed, rules[i].Family(), rules[i].String())
	}
}
