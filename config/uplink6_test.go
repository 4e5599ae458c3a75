package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// up6 is dual with an uplink whose IPv6 keys the cases add, from line 12.
const up6 = dual + "[uplink]\naddress = \"10.99.0.1/30\"\nhost_address = \"10.99.0.2/30\"\n"

func TestUplinkAddress6(t *testing.T) {
	p := parse(t, up6+"address6 = \"fd00:ff::2/64\"\nhost_address6 = \"fd00:ff::1/64\"\n")
	require.Equal(t, netip.MustParsePrefix("fd00:ff::2/64"), p.Uplink.Address6)
	require.Equal(t, netip.MustParsePrefix("fd00:ff::1/64"), p.Uplink.HostAddress6)

	// written back as net.toml, it parses to the same plan
	back := parse(t, string(p.Source()))
	require.Equal(t, p.Uplink, back.Uplink)
	var b strings.Builder
	require.NoError(t, p.Write(&b))
	require.Contains(t, b.String(), "address6=fd00:ff::2/64 host_address6=fd00:ff::1/64")

	// without them the uplink is IPv4 only
	require.False(t, parse(t, up6).Uplink.Address6.IsValid())

	// a /127 may use its first address (RFC 6164)
	p = parse(t, up6+"address6 = \"fd00:ff::/127\"\nhost_address6 = \"fd00:ff::1/127\"\n")
	require.Equal(t, netip.MustParseAddr("fd00:ff::"), p.Uplink.Address6.Addr())
}

func TestUplinkAddress6Rejects(t *testing.T) {
	for _, tc := range []struct {
		name, add string
		line      int
		msg       string
	}{
		{"host_address6 missing", "address6 = \"fd00:ff::2/64\"\n", 9, "uplink: host_address6 is required"},
		{"address6 missing", "host_address6 = \"fd00:ff::1/64\"\n", 9, "uplink: address6 is required"},
		{"not IPv6", "address6 = \"10.1.0.1/30\"\nhost_address6 = \"fd00:ff::1/64\"\n", 12, `address6 "10.1.0.1/30" is not an IPv6 address with a prefix length`},
		{"no prefix length", "address6 = \"fd00:ff::2\"\nhost_address6 = \"fd00:ff::1/64\"\n", 12, "is not an IPv6 address with a prefix length"},
		{"link-local", "address6 = \"fe80::2/64\"\nhost_address6 = \"fe80::1/64\"\n", 12, "is neither unique local (fc00::/7) nor global unicast (2000::/3)"},
		{"anycast", "address6 = \"fd00:ff::/64\"\nhost_address6 = \"fd00:ff::1/64\"\n", 12, "is the subnet-router anycast address"},
		{"different subnets", "address6 = \"fd00:ff::2/64\"\nhost_address6 = \"fd00:fe::1/64\"\n", 13, "host_address6 fd00:fe::1/64 and address6 fd00:ff::2/64 are not in the same subnet"},
		{"same address", "address6 = \"fd00:ff::2/64\"\nhost_address6 = \"fd00:ff::2/64\"\n", 13, "host_address6 fd00:ff::2/64 is the same address as address6"},
		{"overlaps a network", "address6 = \"fd00:20::ff:2/112\"\nhost_address6 = \"fd00:20::ff:1/112\"\n", 12, `uplink: address6 fd00:20::ff:2/112 overlaps network "front" (fd00:20::/64)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(up6+tc.add), "net.toml")
			require.Error(t, err)
			var first *Error
			require.True(t, errors.As(err, &first), "%T %v", err, err)
			require.Contains(t, first.Msg, tc.msg, "all: %v", err)
			require.Equal(t, tc.line, first.Line, "%v", err)
		})
	}
}
