package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const diffBase = `
name = "lab"

[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[network]]
name = "back"
subnet = "172.21.0.0/24"

[[endpoint]]
name = "web"
network = "front"
publish = ["8080:80"]

[[endpoint]]
name = "api"
network = "front"
aliases = ["a"]

[[endpoint]]
name = "side"
mode = "container:api"

[[endpoint]]
name = "db"
network = "back"
`

func mustParse(t *testing.T, s string) *Plan {
	t.Helper()
	p, err := Parse([]byte(s), "net.toml")
	require.NoError(t, err)
	return p
}

func changes(d *Diff) []string {
	var out []string
	for _, c := range d.Changes {
		out = append(out, c.String())
	}
	return out
}

func TestCompareUnchanged(t *testing.T) {
	d, err := Compare(mustParse(t, diffBase), mustParse(t, diffBase))
	require.NoError(t, err)
	require.True(t, d.Empty())
	// The running plan written back compares equal too.
	p := mustParse(t, diffBase)
	again, err := ParseLive(p.Source(), "source")
	require.NoError(t, err)
	d, err = Compare(p, again)
	require.NoError(t, err)
	require.Empty(t, changes(d))
}

func TestCompareChanges(t *testing.T) {
	next := strings.Replace(diffBase, `publish = ["8080:80"]`, `publish = ["8081:80"]`, 1)
	next = strings.Replace(next, `aliases = ["a"]`, `aliases = ["a", "b"]`, 1)
	next = strings.Replace(next, "[[endpoint]]\nname = \"db\"\nnetwork = \"back\"\n", "[[endpoint]]\nname = \"db\"\nnetwork = \"back\"\nip = \"172.21.0.9\"\n", 1)
	next += `
[[network]]
name = "extra"
subnet = "172.22.0.0/24"
isolate = false

[[endpoint]]
name = "new"
network = "extra"
`
	d, err := Compare(mustParse(t, diffBase), mustParse(t, next))
	require.NoError(t, err)
	require.Equal(t, []string{
		"+ network extra",
		"~ endpoint db (ip, mac, recreated)",
		"~ endpoint web (publish)",
		"~ endpoint api (aliases)",
		"+ endpoint new",
	}, changes(d))
	require.Len(t, d.RemoveEndpoints, 1)
	require.Equal(t, "db", d.RemoveEndpoints[0].Name)
	require.Equal(t, []string{"db", "new"}, []string{d.AddEndpoints[0].Name, d.AddEndpoints[1].Name})
	require.Equal(t, "172.21.0.9", d.AddEndpoints[0].Interfaces[0].IP.String())
	require.Len(t, d.UpdateEndpoints, 2)
}

// A changed port_security is applied in place, like aliases and publish:
// the endpoint keeps its namespace and connections.
func TestComparePortSecurityInPlace(t *testing.T) {
	next := strings.Replace(diffBase, "name = \"web\"\nnetwork = \"front\"\n", "name = \"web\"\nnetwork = \"front\"\nport_security = false\n", 1)
	d, err := Compare(mustParse(t, diffBase), mustParse(t, next))
	require.NoError(t, err)
	require.Equal(t, []string{"~ endpoint web (port_security)"}, changes(d))
	require.Empty(t, d.RemoveEndpoints)
	require.Empty(t, d.AddEndpoints)
	require.Len(t, d.UpdateEndpoints, 1)
	require.False(t, d.UpdateEndpoints[0].PortSecurity)
}

func TestCompareRemovalsAndRecreatedNetwork(t *testing.T) {
	next := strings.Replace(diffBase, "subnet = \"172.21.0.0/24\"", "subnet = \"172.23.0.0/24\"", 1)
	next = strings.Replace(next, "[[endpoint]]\nname = \"side\"\nmode = \"container:api\"\n", "", 1)
	next = strings.Replace(next, "[[network]]\nname = \"front\"\nsubnet = \"172.20.0.0/24\"\n", "[[network]]\nname = \"front\"\nsubnet = \"172.20.0.0/24\"\nisolate = false\n", 1)
	d, err := Compare(mustParse(t, diffBase), mustParse(t, next))
	require.NoError(t, err)
	require.Equal(t, []string{
		"~ network front (isolate)",
		"~ network back (subnet, gateway, recreated)",
		"- endpoint side",
		"~ endpoint db (ip, mac, network back, recreated)",
	}, changes(d))
	require.Len(t, d.UpdateNetworks, 1)
	require.Equal(t, "back", d.RemoveNetworks[0].Name)
	require.Equal(t, "back", d.AddNetworks[0].Name)
}

func TestCompareContainerFollowsTarget(t *testing.T) {
	next := strings.Replace(diffBase, "name = \"api\"\nnetwork = \"front\"\n", "name = \"api\"\nnetwork = \"front\"\nlink = \"veth\"\n", 1)
	d, err := Compare(mustParse(t, diffBase), mustParse(t, next))
	require.NoError(t, err)
	require.Equal(t, []string{"~ endpoint api (link, recreated)", "~ endpoint side (container api, recreated)"}, changes(d))
}

func TestCompareRefusesFixedKeys(t *testing.T) {
	for _, c := range []struct{ from, to, msg string }{
		{`name = "lab"`, `name = "lab2"`, `name: "lab2" cannot change`},
		{`[uplink]`, "[defaults]\nfdb_max = 10\n[uplink]", "defaults.fdb_max cannot change while the instance runs"},
		{`host_address = "10.250.0.1/30"`, "host_address = \"10.250.0.1/30\"\nuserland_proxy = false", "uplink.userland_proxy cannot change"},
		{`[uplink]`, "[dns]\nupstream = [\"10.0.0.1:53\"]\n[uplink]", "dns.upstream cannot change"},
	} {
		_, err := Compare(mustParse(t, diffBase), mustParse(t, strings.Replace(diffBase, c.from, c.to, 1)))
		require.ErrorContains(t, err, c.msg)
	}
	// publish_range and rules may change.
	d, err := Compare(mustParse(t, diffBase), mustParse(t, diffBase+"\n[[rule]]\nhook = \"forward\"\naction = \"drop\"\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"~ rules (1)"}, changes(d))
}

func TestCompareKeepsRandomHostPorts(t *testing.T) {
	base := strings.Replace(diffBase, `aliases = ["a"]`, "aliases = [\"a\"]\npublish = [\"9000\"]", 1)
	running := mustParse(t, base)
	require.Equal(t, uint16(32768), running.Endpoints[1].Publish[0].HostPort)
	// Written back and parsed (as after a live change), the port is pinned.
	pinned, err := ParseLive(running.Source(), "source")
	require.NoError(t, err)
	d, err := Compare(pinned, mustParse(t, base))
	require.NoError(t, err)
	require.Empty(t, changes(d))

	// A file whose random pick differs keeps the running host port.
	running.Endpoints[1].Publish[0].HostPort = 40000
	next := mustParse(t, base)
	next.KeepHostPorts(running)
	require.Equal(t, uint16(40000), next.Endpoints[1].Publish[0].HostPort)
	d, err = Compare(running, next)
	require.NoError(t, err)
	require.Empty(t, changes(d))
}
