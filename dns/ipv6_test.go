package dns

import (
	"testing"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

const dualConfig = `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
subnet6 = "fd00:20::/64"
[[network]]
name = "old"
subnet = "172.21.0.0/24"
[[endpoint]]
name = "web"
network = "front"
ip = "172.20.0.10"
ip6 = "fd00:20::10"
aliases = ["www"]
[[endpoint]]
name = "legacy"
network = "old"
`

// TestAAAAAndIP6Arpa: on a network with subnet6, names and aliases have an
// AAAA record with their ip6 besides the A record, ANY gets both, and
// ip6.arpa names of those addresses have PTR records; a name on an IPv4
// only network still has no AAAA data.
func TestAAAAAndIP6Arpa(t *testing.T) {
	p, err := config.Parse([]byte(dualConfig), "net.toml")
	require.NoError(t, err)
	s := New(p, nil, nil)

	for _, name := range []string{"web", "www", "web.front"} {
		m := ask(t, s, "front", name, miekg.TypeAAAA)
		require.Equal(t, miekg.RcodeSuccess, m.Rcode)
		require.Len(t, m.Answer, 1, "%s", name)
		aaaa, ok := m.Answer[0].(*miekg.AAAA)
		require.True(t, ok, "%v", m.Answer[0])
		require.Equal(t, "fd00:20::10", aaaa.AAAA.String())
		require.EqualValues(t, TTL, aaaa.Hdr.Ttl)
		require.Equal(t, []string{"172.20.0.10"}, aRecords(t, ask(t, s, "front", name, miekg.TypeA)), "A stays IPv4 only")
	}
	m := ask(t, s, "front", "web", miekg.TypeANY)
	require.Len(t, m.Answer, 2)

	m = ask(t, s, "old", "legacy", miekg.TypeAAAA)
	require.Equal(t, miekg.RcodeSuccess, m.Rcode)
	require.Empty(t, m.Answer)

	arpa, err := miekg.ReverseAddr("fd00:20::10")
	require.NoError(t, err)
	m = ask(t, s, "front", arpa, miekg.TypePTR)
	require.Equal(t, miekg.RcodeSuccess, m.Rcode)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "web.", m.Answer[0].(*miekg.PTR).Ptr)

	other, err := miekg.ReverseAddr("fd00:20::99")
	require.NoError(t, err)
	m = ask(t, s, "front", other, miekg.TypePTR)
	require.Equal(t, miekg.RcodeNameError, m.Rcode, "an unused address of subnet6")
}

func TestReverse6Parse(t *testing.T) {
	arpa, err := miekg.ReverseAddr("2001:db8::1:abcd")
	require.NoError(t, err)
	ip, ok := reverse(arpa[:len(arpa)-1])
	require.True(t, ok)
	require.Equal(t, "2001:db8::1:abcd", ip.String())
	for _, bad := range []string{"1.0.ip6.arpa", "x" + arpa[1:len(arpa)-1], "10" + arpa[1:len(arpa)-1]} {
		_, ok := reverse(bad)
		require.False(t, ok, bad)
	}
}
