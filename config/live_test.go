package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pinned clears what Source does not keep: rule lines and whether a host
// port was picked at random.
func pinned(p *Plan) *Plan {
	c := *p
	c.Endpoints = nil
	for _, e := range p.Endpoints {
		e.Publish = append([]Publish(nil), e.Publish...)
		for i := range e.Publish {
			e.Publish[i].Random = false
		}
		c.Endpoints = append(c.Endpoints, e)
	}
	c.Rules = nil
	for _, r := range p.Rules {
		r.Line = 0
		c.Rules = append(c.Rules, r)
	}
	return &c
}

func TestSourceRoundTrip(t *testing.T) {
	rich, err := os.ReadFile("testdata/rich.toml")
	require.NoError(t, err)
	def, _ := Default()
	for name, data := range map[string][]byte{"rich": rich, "default": def.Source()} {
		t.Run(name, func(t *testing.T) {
			p, err := Parse(data, name)
			require.NoError(t, err)
			again, err := ParseLive(p.Source(), "source")
			require.NoError(t, err, "%s", p.Source())
			require.Equal(t, pinned(p), pinned(again))
		})
	}
}

func TestAttachmentKeys(t *testing.T) {
	def, _ := Default()
	att := Endpoint{Name: AttachmentName("0123456789abcdef", "net1"), Mode: ModeBridge, Link: LinkTAP, PortSecurity: true,
		NetnsPath: "/var/run/netns/x", ContainerID: "0123456789abcdef",
		Interfaces: []Interface{{Name: "net1", Network: "bridge"}}}
	require.Equal(t, "cni-0123456789ab/net1", att.Name)
	src := append(def.Source(), "\n[[endpoint]]\nname = \"cni-0123456789ab/net1\"\nnetns_path = \"/var/run/netns/x\"\nifname = \"net1\"\ncontainer_id = \"0123456789abcdef\"\nnetwork = \"bridge\"\n"...)
	p, err := ParseLive(src, "live")
	require.NoError(t, err)
	got := p.Endpoints[len(p.Endpoints)-1]
	require.Equal(t, "net1", got.Interfaces[0].Name)
	require.Equal(t, "cni-0123456789ab/net1", got.Interfaces[0].Port)
	require.Equal(t, "", got.Netns)
	require.True(t, got.IsAttachment())
	again, err := ParseLive(p.Source(), "again")
	require.NoError(t, err)
	require.Equal(t, pinned(p), pinned(again))

	// Not in a net.toml.
	_, err = Parse(src, "net.toml")
	require.ErrorContains(t, err, `unknown key "netns_path"`)
	// The attachment form of a name is refused for an ordinary endpoint.
	_, err = ParseLive(append(def.Source(), "\n[[endpoint]]\nname = \"cni-abc/eth1\"\nnetwork = \"bridge\"\n"...), "live")
	require.ErrorContains(t, err, "name must be")
}

func TestTableSource(t *testing.T) {
	var fields map[string]any
	dec := json.NewDecoder(strings.NewReader(`{"name":"web2","network":"bridge","publish":[9000, "8081:80/tcp"],"aliases":["w"]}`))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&fields))
	tbl, err := TableSource("endpoint", fields)
	require.NoError(t, err)
	def, _ := Default()
	p, err := ParseLive(append(def.Source(), tbl...), "live")
	require.NoError(t, err)
	e := p.Endpoints[len(p.Endpoints)-1]
	require.Equal(t, "web2", e.Name)
	require.Len(t, e.Publish, 2)
	require.Equal(t, uint16(9000), e.Publish[0].ContainerPort)

	// The same refusal as check's, without the file's line.
	fields["ip"] = def.Endpoints[0].Interfaces[0].IP.String()
	tbl, err = TableSource("endpoint", fields)
	require.NoError(t, err)
	_, err = ParseLive(append(def.Source(), tbl...), "live")
	msg, _ := Messages(err)
	require.Equal(t, `endpoint "web2": ip 172.29.0.2 is already taken by endpoint "demo-a"`, msg)
}
