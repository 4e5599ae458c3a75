package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// base is a valid start of four lines: cases add theirs from line 5.
const base = `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
`

// ep is an endpoint "a" on front at lines 5-7, for cases that add from line 8.
const ep = base + `[[endpoint]]
name = "a"
network = "front"
`

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		line int
		msg  string
	}{
		// The file.
		{"bad TOML syntax", base + "mtu = = 3\n", 5, "expected value"},
		{"unknown top-level key", base + "colour = \"red\"\n", 5, `unknown key "colour"`},
		{"unknown table", base + "[defualts]\nfdb_max = 1\n", 5, `unknown key "defualts"`},
		{"unknown network key", base + "gatway = \"172.20.0.1\"\n", 5, `network "front": unknown key "gatway"`},
		{"unknown endpoint key", ep + "ipaddr = \"172.20.0.9\"\n", 8, `endpoint "a": unknown key "ipaddr"`},
		{"unknown interface key", base + "[[endpoint]]\nname = \"a\"\n[[endpoint.interface]]\nnetwork = \"front\"\nvlan = 3\n", 9, `endpoint "a" eth0: unknown key "vlan"`},
		{"key with capitals", base + "[defaults]\nFDB_max = 10\n", 6, `defaults: unknown key "FDB_max"`},
		{"table given a value", "name = \"t\"\nuplink = 3\n", 2, "uplink must be a table ([uplink])"},
		{"array of tables given a table", "name = \"t\"\n[network]\nname = \"front\"\n", 2, "network must be an array of tables ([[network]])"},
		{"wrong value type", base + "mtu = \"big\"\n", 5, `network "front": mtu must be an integer, not string`},

		// Instance and defaults.
		{"name missing", "[[network]]\nname = \"front\"\nsubnet = \"172.20.0.0/24\"\n", 1, "name is required"},
		{"name too long", "name = \"thirteen-char\"\n", 1, `name "thirteen-char" must be 1-12 characters`},
		{"name with capitals", "name = \"Lab\"\n", 1, `name "Lab" must be`},
		{"bad duration", base + "[defaults]\nfdb_ageing = \"5 minutes\"\n", 6, `defaults: fdb_ageing "5 minutes" is not a duration`},
		{"zero duration", base + "[defaults]\nfdb_ageing = \"0s\"\n", 6, `fdb_ageing "0s" must be positive`},
		{"fdb_max zero", base + "[defaults]\nfdb_max = 0\n", 6, "fdb_max 0 is out of range"},
		{"conntrack_max negative", base + "[defaults]\nconntrack_max = -1\n", 6, "conntrack_max -1 is out of range"},
		{"publish_range backwards", base + "[defaults]\npublish_range = \"40000-30000\"\n", 6, "range 40000-30000 is backwards"},
		{"publish_range port 0", base + "[defaults]\npublish_range = \"0-100\"\n", 6, "port 0 is out of range 1-65535"},
		{"port_security not bool", base + "[defaults]\nport_security = \"yes\"\n", 6, "port_security must be true or false, not string"},
		{"busy_poll not bool", base + "[defaults]\nbusy_poll = 1\n", 6, "defaults: busy_poll must be true or false, not integer"},
		{"cpu_latency not bool", base + "[defaults]\ncpu_latency = \"on\"\n", 6, "defaults: cpu_latency must be true or false, not string"},
		{"cpu_latency misspelt", base + "[defaults]\ncpu_latency_us = 0\n", 6, `defaults: unknown key "cpu_latency_us"`},

		// Uplink and DNS.
		{"uplink address missing", base + "[uplink]\nhost_address = \"10.250.0.1/30\"\n", 5, "uplink: address is required"},
		{"uplink address without length", base + "[uplink]\naddress = \"10.250.0.2\"\nhost_address = \"10.250.0.1/30\"\n", 6, `uplink: address "10.250.0.2" is not an IPv4 address with a prefix length`},
		{"uplink other subnet", base + "[uplink]\naddress = \"10.250.0.2/30\"\nhost_address = \"10.250.0.5/30\"\n", 7, "are not in the same subnet"},
		{"uplink same address", base + "[uplink]\naddress = \"10.250.0.2/30\"\nhost_address = \"10.250.0.2/30\"\n", 7, "is the same address as address"},
		{"uplink network address", base + "[uplink]\naddress = \"10.250.0.0/30\"\nhost_address = \"10.250.0.1/30\"\n", 6, "address 10.250.0.0/30 is the network address"},
		{"uplink overlaps a network", base + "[uplink]\naddress = \"172.20.0.2/30\"\nhost_address = \"172.20.0.1/30\"\n", 6, `uplink: address 172.20.0.2/30 overlaps network "front" (172.20.0.0/24)`},
		{"uplink bad netns", base + "[uplink]\naddress = \"10.250.0.2/30\"\nhost_address = \"10.250.0.1/30\"\nnetns = \"../etc\"\n", 8, `netns "../etc" is not a valid namespace name`},
		{"dns upstream without port", base + "[dns]\nupstream = [\"1.1.1.1\"]\n", 6, `dns: upstream "1.1.1.1": want ip:port`},
		{"dns upstream host name", base + "[dns]\nupstream = [\"dns.google:53\"]\n", 6, `"dns.google" is not an IP address`},
		{"dns upstream not strings", base + "[dns]\nupstream = [53]\n", 6, "upstream must hold strings, not integer"},

		// Networks.
		{"network name missing", "name = \"t\"\n[[network]]\nsubnet = \"172.20.0.0/24\"\n", 2, "network #1: name is required"},
		{"network name too long", base + "[[network]]\nname = \"a-very-long-network\"\nsubnet = \"172.21.0.0/24\"\n", 6, `network "a-very-long-network": name must be 1-15 characters`},
		{"network named uplink", base + "[[network]]\nname = \"uplink\"\nsubnet = \"172.21.0.0/24\"\n", 6, `name "uplink" is reserved`},
		{"duplicate network name", base + "[[network]]\nname = \"front\"\nsubnet = \"172.21.0.0/24\"\n", 6, `network "front": duplicate name, first defined at line 3`},
		{"subnet missing", base + "[[network]]\nname = \"back\"\n", 5, `network "back": subnet is required`},
		{"subnet not a prefix", base + "[[network]]\nname = \"back\"\nsubnet = \"172.21.0.0\"\n", 7, `subnet "172.21.0.0" is not an IPv4 prefix`},
		{"subnet IPv6", base + "[[network]]\nname = \"back\"\nsubnet = \"fd00::/64\"\n", 7, `subnet "fd00::/64" is not an IPv4 prefix`},
		{"unmasked subnet", base + "[[network]]\nname = \"back\"\nsubnet = \"172.21.0.5/24\"\n", 7, "subnet 172.21.0.5/24 has host bits set: did you mean 172.21.0.0/24?"},
		{"subnet too small", base + "[[network]]\nname = \"back\"\nsubnet = \"172.21.0.0/31\"\n", 7, "prefix length must be between /8 and /30"},
		{"overlapping subnets", base + "[[network]]\nname = \"back\"\nsubnet = \"172.20.0.0/16\"\n", 7, `network "back": subnet 172.20.0.0/16 overlaps network "front" (172.20.0.0/24)`},
		{"gateway outside", base + "gateway = \"172.21.0.1\"\n", 5, "gateway 172.21.0.1 is outside subnet 172.20.0.0/24"},
		{"gateway broadcast", base + "gateway = \"172.20.0.255\"\n", 5, "gateway 172.20.0.255 is the broadcast address of subnet"},
		{"gateway network address", base + "gateway = \"172.20.0.0\"\n", 5, "gateway 172.20.0.0 is the network address of subnet"},
		{"mtu too small", base + "mtu = 60\n", 5, "mtu 60 is out of range 68-65535"},

		// Endpoints.
		{"endpoint name missing", base + "[[endpoint]]\nnetwork = \"front\"\n", 5, "endpoint #1: name is required"},
		{"endpoint name invalid", base + "[[endpoint]]\nname = \"Web/1\"\nnetwork = \"front\"\n", 6, `endpoint "Web/1": name must be 1-64 characters`},
		{"endpoint name too long", base + "[[endpoint]]\nname = \"" + strings.Repeat("a", 65) + "\"\nnetwork = \"front\"\n", 6, "name must be 1-64 characters"},
		{"endpoint named uplink", base + "[[endpoint]]\nname = \"uplink\"\nnetwork = \"front\"\n", 6, `name "uplink" is reserved`},
		{"duplicate endpoint name", ep + "[[endpoint]]\nname = \"a\"\nnetwork = \"front\"\n", 9, `endpoint "a": duplicate name, first defined at line 6`},
		{"bad mode", ep + "mode = \"macvlan\"\n", 8, `endpoint "a": mode "macvlan" is not bridge, none, host or container:<endpoint>`},
		{"mode naming a missing endpoint", ep + "[[endpoint]]\nname = \"b\"\nmode = \"container:web\"\n", 10, `endpoint "b": mode "container:web": endpoint "web" does not exist`},
		{"container of itself", base + "[[endpoint]]\nname = \"b\"\nmode = \"container:b\"\n", 7, "cannot share its own namespace"},
		{"container of a container", ep + "[[endpoint]]\nname = \"b\"\nmode = \"container:a\"\n[[endpoint]]\nname = \"c\"\nmode = \"container:b\"\n", 13, `endpoint "b" is itself in container mode; name "a"`},
		{"container of host", base + "[[endpoint]]\nname = \"h\"\nmode = \"host\"\n[[endpoint]]\nname = \"c\"\nmode = \"container:h\"\n", 10, `endpoint "h" is in host mode`},
		{"container with a network", ep + "[[endpoint]]\nname = \"b\"\nmode = \"container:a\"\nnetwork = \"front\"\n", 11, `endpoint "b": networks need mode "bridge"`},
		{"host with netns", base + "[[endpoint]]\nname = \"h\"\nmode = \"host\"\nnetns = \"x\"\n", 8, `netns does not apply to mode "host"`},
		{"none with publish", base + "[[endpoint]]\nname = \"n\"\nmode = \"none\"\npublish = [\"80\"]\n", 8, `endpoint "n": publish needs mode "bridge"`},
		{"none with aliases", base + "[[endpoint]]\nname = \"n\"\nmode = \"none\"\naliases = [\"x\"]\n", 8, `aliases need mode "bridge"`},
		{"bad link", ep + "link = \"macvtap\"\n", 8, `link "macvtap" is not tap or veth`},
		{"link on none", base + "[[endpoint]]\nname = \"n\"\nmode = \"none\"\nlink = \"tap\"\n", 8, `link only applies to mode "bridge"`},
		{"bridge without network", base + "[[endpoint]]\nname = \"a\"\n", 5, `endpoint "a": mode "bridge" needs a network`},
		{"ip without network", base + "[[endpoint]]\nname = \"a\"\nip = \"172.20.0.9\"\n", 5, `endpoint "a": network is required`},
		{"shorthand and tables", ep + "[[endpoint.interface]]\nnetwork = \"front\"\n", 8, "give either network/ip/mac or [[endpoint.interface]] tables, not both"},
		{"network missing", base + "[[endpoint]]\nname = \"a\"\nnetwork = \"frnt\"\n", 7, `endpoint "a": network "frnt" does not exist`},
		{"same network twice", base + "[[endpoint]]\nname = \"a\"\n[[endpoint.interface]]\nnetwork = \"front\"\n[[endpoint.interface]]\nnetwork = \"front\"\n", 10, `endpoint "a" eth1: already on network "front" (eth0)`},
		{"netns taken", ep + "[[endpoint]]\nname = \"b\"\nnetns = \"a\"\nnetwork = \"front\"\n", 10, `endpoint "b": netns "a" is already the namespace of endpoint "a"`},
		{"bad netns", ep + "netns = \"a b\"\n", 8, `netns "a b" is not a valid namespace name`},

		// Addresses.
		{"ip not an address", ep + "ip = \"172.20.0.300\"\n", 8, `ip "172.20.0.300" is not an IPv4 address`},
		{"ip outside subnet", ep + "ip = \"172.21.0.9\"\n", 8, `endpoint "a": ip 172.21.0.9 is outside network "front" (172.20.0.0/24)`},
		{"ip is the gateway", ep + "ip = \"172.20.0.1\"\n", 8, `ip 172.20.0.1 is the gateway of network "front"`},
		{"ip is the network address", ep + "ip = \"172.20.0.0\"\n", 8, `ip 172.20.0.0 is the network address of network "front"`},
		{"ip is the broadcast address", ep + "ip = \"172.20.0.255\"\n", 8, `ip 172.20.0.255 is the broadcast address of network "front"`},
		{"ip taken", ep + "ip = \"172.20.0.9\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\nip = \"172.20.0.9\"\n", 12, `endpoint "b": ip 172.20.0.9 is already taken by endpoint "a"`},
		{"ip taken by a second interface", base + "[[endpoint]]\nname = \"a\"\n[[endpoint.interface]]\nnetwork = \"front\"\nip = \"172.20.0.9\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\nip = \"172.20.0.9\"\n", 13, `ip 172.20.0.9 is already taken by endpoint "a"`},
		{"subnet full", "name = \"t\"\n[[network]]\nname = \"tiny\"\nsubnet = \"10.0.0.0/30\"\n[[endpoint]]\nname = \"a\"\nnetwork = \"tiny\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"tiny\"\n", 10, `endpoint "b": network "tiny" (10.0.0.0/30) is full`},

		// MACs.
		{"bad mac", ep + "mac = \"02:42:zz:00:00:01\"\n", 8, `mac "02:42:zz:00:00:01" is not a MAC address`},
		{"multicast mac", ep + "mac = \"01:00:5e:00:00:01\"\n", 8, `endpoint "a": mac 01:00:5e:00:00:01 is a multicast address`},
		{"zero mac", ep + "mac = \"00:00:00:00:00:00\"\n", 8, "mac 00:00:00:00:00:00 is the zero address"},
		{"duplicate mac", ep + "mac = \"02:00:00:00:00:01\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\nmac = \"02:00:00:00:00:01\"\n", 12, `endpoint "b": mac 02:00:00:00:00:01 is already used by endpoint "a"`},
		{"mac of the gateway", ep + "mac = \"02:42:ac:14:00:01\"\n", 8, `mac 02:42:ac:14:00:01 is already used by the gateway of network "front"`},
		{"mac derived from a taken one", ep + "mac = \"02:42:ac:14:00:03\"\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\n", 9, `endpoint "b": mac 02:42:ac:14:00:03 (derived from ip 172.20.0.3) is already used by endpoint "a"`},

		// Aliases.
		{"alias not a label", ep + "aliases = [\"-www\"]\n", 8, `alias "-www" is not a DNS label`},
		{"alias listed twice", ep + "aliases = [\"www\", \"www\"]\n", 8, `alias "www" is listed twice`},
		{"alias is an endpoint name", ep + "aliases = [\"b\"]\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\n", 8, `endpoint "a": alias "b" is already the name of endpoint "b" on network "front"`},
		{"alias of another endpoint", ep + "aliases = [\"www\"]\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\naliases = [\"www\"]\n", 12, `endpoint "b": alias "www" is already an alias of endpoint "a" on network "front"`},

		// Published ports.
		{"publish unparsable", ep + "publish = [\"80:http\"]\n", 8, `endpoint "a": publish "80:http": container port "http" is not a number`},
		{"publish bad protocol", ep + "publish = [\"80/sctp\"]\n", 8, `protocol "sctp" is not tcp or udp`},
		{"publish host port out of range", ep + "publish = [\"70000:80\"]\n", 8, "host port 70000 is out of range 1-65535"},
		{"publish container port 0", ep + "publish = [\"0\"]\n", 8, "container port 0 is out of range"},
		{"publish not a list", ep + "publish = \"80\"\n", 8, "publish must be an array, not string"},
		{"host port published twice", ep + "publish = [\"8080:80\"]\n[[endpoint]]\nname = \"b\"\nnetwork = \"front\"\npublish = [\"8080:8080/tcp\"]\n", 12, `endpoint "b": host port 8080/tcp is published twice (also by endpoint "a")`},
		{"publish range exhausted", base + "[defaults]\npublish_range = \"5000-5001\"\n[[endpoint]]\nname = \"a\"\nnetwork = \"front\"\npublish = [\"5000:1\", \"80\", \"81\"]\n", 10, "no free host port left in publish_range 5000-5001 for 81/tcp"},

		// Rules.
		{"rule hook missing", base + "[[rule]]\naction = \"drop\"\n", 5, "rule #1: hook is required"},
		{"rule bad hook", base + "[[rule]]\nhook = \"FORWARD\"\naction = \"drop\"\n", 6, `rule #1: hook "FORWARD" is not one of prerouting, input, forward, output, postrouting`},
		{"rule bad action", base + "[[rule]]\nhook = \"forward\"\naction = \"allow\"\n", 7, `action "allow" is not one of`},
		{"rule bad proto", base + "[[rule]]\nhook = \"forward\"\nproto = \"gre\"\naction = \"drop\"\n", 7, `proto "gre" is not one of tcp, udp, icmp, icmpv6, all`},
		{"rule bad port", base + "[[rule]]\nhook = \"forward\"\nproto = \"tcp\"\ndport = \"http\"\naction = \"drop\"\n", 8, `rule #1: dport "http": port "http" is not a number`},
		{"rule backwards ports", base + "[[rule]]\nhook = \"forward\"\nproto = \"udp\"\nsport = \"2000-1000\"\naction = \"drop\"\n", 8, "range 2000-1000 is backwards"},
		{"rule port without proto", base + "[[rule]]\nhook = \"forward\"\ndport = 80\naction = \"drop\"\n", 7, "dport needs proto tcp or udp"},
		{"rule bad src", base + "[[rule]]\nhook = \"forward\"\nsrc = \"front\"\naction = \"drop\"\n", 7, `src "front" is not an IPv4 or IPv6 address or prefix`},
		{"rule unknown network", base + "[[rule]]\nhook = \"forward\"\nin = \"back\"\naction = \"drop\"\n", 7, `in: network "back" does not exist`},
		{"rule uplink without uplink", base + "[[rule]]\nhook = \"forward\"\nout = \"uplink\"\naction = \"drop\"\n", 7, `out "uplink": there is no [uplink]`},
		{"rule in on postrouting", base + "[[rule]]\nhook = \"postrouting\"\nin = \"front\"\naction = \"drop\"\n", 7, `in does not apply to hook "postrouting"`},
		{"rule bad state", base + "[[rule]]\nhook = \"forward\"\nstate = \"new,closed\"\naction = \"drop\"\n", 7, `state "closed" is not one of new, established, related, invalid`},
		{"rule snat in forward", base + "[[rule]]\nhook = \"forward\"\naction = \"snat\"\nto = \"1.2.3.4\"\n", 7, `action "snat" only applies to hook postrouting`},
		{"rule dnat in input", base + "[[rule]]\nhook = \"input\"\naction = \"dnat\"\nto = \"1.2.3.4\"\n", 7, `action "dnat" only applies to hook prerouting or output`},
		{"rule dnat without to", base + "[[rule]]\nhook = \"prerouting\"\naction = \"dnat\"\n", 5, `action "dnat" needs to = "ip" or "ip:port"`},
		{"rule bad to", base + "[[rule]]\nhook = \"prerouting\"\naction = \"dnat\"\nto = \"172.20.0.9:0\"\n", 8, `to "172.20.0.9:0" is not an address or address:port`},
		{"rule of two families", base + "[[rule]]\nhook = \"forward\"\nsrc = \"172.20.0.0/24\"\ndst = \"fd00::/64\"\naction = \"drop\"\n", 8, "dst is IPv6 but src IPv4: a rule matches one address family"},
		{"rule icmp with IPv6", base + "[[rule]]\nhook = \"forward\"\nproto = \"icmp\"\ndst = \"fd00::1\"\naction = \"drop\"\n", 8, "dst is IPv6 but proto icmp IPv4"},
		{"rule dnat to IPv6 from IPv4", base + "[[rule]]\nhook = \"prerouting\"\ndst = \"10.9.0.1\"\naction = \"dnat\"\nto = \"[fd00::5]:80\"\n", 9, "to is IPv6 but dst IPv4"},
		{"rule to with accept", base + "[[rule]]\nhook = \"forward\"\naction = \"accept\"\nto = \"1.2.3.4\"\n", 8, "to only applies to actions snat and dnat"},
		{"second rule", base + "[[rule]]\nhook = \"forward\"\naction = \"drop\"\n[[rule]]\nhook = \"forward\"\naction = \"nope\"\n", 10, `rule #2: action "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml), "net.toml")
			require.Error(t, err)
			var first *Error
			require.ErrorAs(t, err, &first)
			require.Equal(t, "net.toml", first.File)
			require.Contains(t, first.Msg, tc.msg, "all: %v", err)
			require.Equal(t, tc.line, first.Line, "%v", err)
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	text := base + `[[endpoint]]
name = "a"
network = "front"
ip = "172.21.0.9"
link = "fibre"
[[endpoint]]
name = "a"
network = "nowhere"
`
	_, err := Parse([]byte(text), "net.toml")
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Equal(t, []string{
		`net.toml:8: endpoint "a": ip 172.21.0.9 is outside network "front" (172.20.0.0/24)`,
		`net.toml:9: endpoint "a": link "fibre" is not tap or veth`,
		`net.toml:11: endpoint "a": duplicate name, first defined at line 6`,
		`net.toml:12: endpoint "a": network "nowhere" does not exist`,
	}, lines)
	var all interface{ Unwrap() []error }
	require.True(t, errors.As(err, &all))
	for _, e := range all.Unwrap() {
		require.IsType(t, &Error{}, e)
	}
}

func TestErrorFormat(t *testing.T) {
	require.Equal(t, "net.toml:12: boom", (&Error{File: "net.toml", Line: 12, Msg: "boom"}).Error())
	require.Equal(t, "net.toml: boom", (&Error{File: "net.toml", Msg: "boom"}).Error())
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.toml")
	require.ErrorContains(t, err, "does-not-exist.toml")
}
