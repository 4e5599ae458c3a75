package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

func parse(t *testing.T, text string) *Plan {
	t.Helper()
	p, err := Parse([]byte(text), "net.toml")
	require.NoError(t, err)
	return p
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func ips(p *Plan) map[string]string {
	m := map[string]string{}
	for _, e := range p.Endpoints {
		for _, ifc := range e.Interfaces {
			m[ifc.Port] = ifc.Prefix.String()
		}
	}
	return m
}

func TestIPAMLowestFree(t *testing.T) {
	p := parse(t, `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/29"
[[endpoint]]
name = "a"
network = "front"
[[endpoint]]
name = "b"
network = "front"
ip = "172.20.0.3"
[[endpoint]]
name = "c"
network = "front"
[[endpoint]]
name = "d"
network = "front"
`)
	// .0 network, .1 gateway, .3 given to b, .7 broadcast.
	require.Equal(t, map[string]string{
		"a": "172.20.0.2/29",
		"b": "172.20.0.3/29",
		"c": "172.20.0.4/29",
		"d": "172.20.0.5/29",
	}, ips(p))
}

func TestIPAMGatewayNotFirst(t *testing.T) {
	p := parse(t, `name = "t"
[[network]]
name = "front"
subnet = "10.0.0.0/30"
gateway = "10.0.0.2"
[[endpoint]]
name = "a"
network = "front"
`)
	require.Equal(t, addr("10.0.0.2"), p.Networks[0].Gateway)
	require.Equal(t, packet.MAC{0x02, 0x42, 10, 0, 0, 2}, p.Networks[0].GatewayMAC)
	ifc := p.Endpoints[0].Interfaces[0]
	require.Equal(t, addr("10.0.0.1"), ifc.IP)
	require.Equal(t, addr("10.0.0.2"), ifc.Gateway)
}

func TestIPAMLaterExplicitIPIsHonoured(t *testing.T) {
	// An explicit IP later in the file is claimed before any is picked.
	p := parse(t, `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[endpoint]]
name = "a"
network = "front"
[[endpoint]]
name = "b"
network = "front"
ip = "172.20.0.2"
`)
	require.Equal(t, map[string]string{"a": "172.20.0.3/24", "b": "172.20.0.2/24"}, ips(p))
}

func TestMACDerivation(t *testing.T) {
	p := parse(t, `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[endpoint]]
name = "web"
network = "front"
ip = "172.20.0.10"
[[endpoint]]
name = "fixed"
network = "front"
mac = "0a:00:00:00:00:01"
`)
	require.Equal(t, "02:42:ac:14:00:0a", p.Endpoints[0].Interfaces[0].MAC.String())
	require.Equal(t, "0a:00:00:00:00:01", p.Endpoints[1].Interfaces[0].MAC.String())
	require.Equal(t, "02:42:ac:14:00:01", p.Networks[0].GatewayMAC.String())
}

func TestMultipleInterfaces(t *testing.T) {
	p := parse(t, `name = "t"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[network]]
name = "back"
subnet = "172.21.0.0/24"
mtu = 9000
[[endpoint]]
name = "api"
  [[endpoint.interface]]
  network = "front"
  [[endpoint.interface]]
  network = "back"
  ip = "172.21.0.5"
`)
	require.Equal(t, []Interface{
		{
			Name: "eth0", Port: "api", Network: "front",
			IP: addr("172.20.0.2"), Prefix: netip.MustParsePrefix("172.20.0.2/24"),
			MAC: packet.MAC{2, 0x42, 172, 20, 0, 2}, Gateway: addr("172.20.0.1"), MTU: 1500,
		},
		{
			Name: "eth1", Port: "api/eth1", Network: "back",
			IP: addr("172.21.0.5"), Prefix: netip.MustParsePrefix("172.21.0.5/24"),
			MAC: packet.MAC{2, 0x42, 172, 21, 0, 5}, Gateway: addr("172.21.0.1"), MTU: 9000,
		},
	}, p.Endpoints[0].Interfaces)
}

func TestRandomPublishPorts(t *testing.T) {
	text := `name = "t"
[defaults]
publish_range = "30000-30100"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[endpoint]]
name = "a"
network = "front"
publish = ["80", "443/tcp", "53/udp"]
[[endpoint]]
name = "b"
network = "front"
publish = ["30001:8080", "81", "30000:53/udp", "54/udp"]
`
	want := [][]Publish{
		{
			{HostPort: 30000, ContainerPort: 80, Proto: "tcp", Random: true},
			{HostPort: 30002, ContainerPort: 443, Proto: "tcp", Random: true},
			{HostPort: 30001, ContainerPort: 53, Proto: "udp", Random: true},
		},
		{
			{HostPort: 30001, ContainerPort: 8080, Proto: "tcp"},
			{HostPort: 30003, ContainerPort: 81, Proto: "tcp", Random: true},
			{HostPort: 30000, ContainerPort: 53, Proto: "udp"},
			{HostPort: 30002, ContainerPort: 54, Proto: "udp", Random: true},
		},
	}
	for range 3 { // deterministic
		p := parse(t, text)
		require.Equal(t, want[0], p.Endpoints[0].Publish)
		require.Equal(t, want[1], p.Endpoints[1].Publish)
	}
}

func TestDefaultsApplied(t *testing.T) {
	p := parse(t, `name = "t"
[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[endpoint]]
name = "a"
network = "front"
`)
	require.Equal(t, Defaults{
		FDBAgeing:    clock.Duration(300 * time.Second),
		FDBMax:       8192,
		ConntrackMax: DefaultConntrackMax(),
		PublishRange: [2]uint16{32768, 60999},
		PortSecurity: true,
		Offload:      true,
		BusyPoll:     true,
	}, p.Defaults)
	require.Equal(t, &Uplink{
		Address:       netip.MustParsePrefix("10.250.0.2/30"),
		MAC:           packet.MAC{2, 0x42, 10, 250, 0, 2},
		HostAddress:   netip.MustParsePrefix("10.250.0.1/30"),
		HostDevice:    "t-up",
		Routes:        true,
		UserlandProxy: true,
	}, p.Uplink)
	require.Equal(t, DNS{Upstream: []string{}}, p.DNS)
	require.Equal(t, Network{
		Name:       "front",
		Subnet:     netip.MustParsePrefix("172.20.0.0/24"),
		Gateway:    addr("172.20.0.1"),
		GatewayMAC: packet.MAC{2, 0x42, 172, 20, 0, 1},
		Masquerade: true,
		Isolate:    true,
		DNS:        true,
		MTU:        1500,
	}, p.Networks[0])
	e := p.Endpoints[0]
	require.Equal(t, "a", e.Netns)
	require.Equal(t, ModeBridge, e.Mode)
	require.Equal(t, LinkTAP, e.Link)
	require.True(t, e.PortSecurity)
}

func TestModes(t *testing.T) {
	p := parse(t, `name = "t"
[defaults]
port_security = false
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[endpoint]]
name = "db"
netns = "db-ns"
link = "veth"
port_security = true
network = "front"
[[endpoint]]
name = "shell"
mode = "container:db"
[[endpoint]]
name = "tools"
mode = "none"
[[endpoint]]
name = "sniff"
mode = "container:tools"
[[endpoint]]
name = "probe"
mode = "host"
`)
	require.Len(t, p.Endpoints, 5)
	db, shell, tools, sniff, probe := p.Endpoints[0], p.Endpoints[1], p.Endpoints[2], p.Endpoints[3], p.Endpoints[4]
	require.Equal(t, "db-ns", db.Netns)
	require.Equal(t, LinkVeth, db.Link)
	require.True(t, db.PortSecurity)

	require.Equal(t, Endpoint{Name: "shell", Netns: "db-ns", Mode: ModeContainer, Container: "db"}, shell)
	require.Equal(t, Endpoint{Name: "tools", Netns: "tools", Mode: ModeNone}, tools)
	require.Equal(t, Endpoint{Name: "sniff", Netns: "tools", Mode: ModeContainer, Container: "tools"}, sniff)
	require.Equal(t, Endpoint{Name: "probe", Mode: ModeHost}, probe)
}

func TestRules(t *testing.T) {
	p := parse(t, `name = "t"
[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"
[[network]]
name = "front"
subnet = "172.20.0.0/24"
[[rule]]
hook = "forward"
src = "172.20.0.7"
dst = "10.0.0.9/8"
proto = "tcp"
sport = 1000
dport = "8000-8080"
in = "front"
out = "uplink"
state = ["new", "established"]
action = "accept"
[[rule]]
hook = "prerouting"
proto = "all"
action = "dnat"
to = "172.20.0.9:8080"
`)
	require.Equal(t, []Rule{
		{
			Hook:   "forward",
			Src:    netip.MustParsePrefix("172.20.0.7/32"),
			Dst:    netip.MustParsePrefix("10.0.0.0/8"),
			Proto:  "tcp",
			Sport:  [2]uint16{1000, 1000},
			Dport:  [2]uint16{8000, 8080},
			In:     "front",
			Out:    "uplink",
			State:  []string{"new", "established"},
			Action: "accept",
			Line:   8,
		},
		{Hook: "prerouting", Action: "dnat", To: "172.20.0.9:8080", Line: 19},
	}, p.Rules)
	require.Equal(t, "-A FORWARD -s 172.20.0.7/32 -d 10.0.0.0/8 -i front -o uplink -p tcp --sport 1000 --dport 8000:8080 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT", p.Rules[0].String())
	require.Equal(t, "-A PREROUTING -j DNAT --to-destination 172.20.0.9:8080", p.Rules[1].String())
}

func TestDefault(t *testing.T) {
	p, raw := Default()
	require.Equal(t, defaultTOML, raw)
	require.Equal(t, "demo", p.Name)
	require.Equal(t, "demo-host", p.Uplink.Netns, "the demo's host side is a namespace of its own")
	require.Len(t, p.Networks, 2)
	require.Equal(t, "bridge", p.Networks[0].Name)
	require.False(t, p.Networks[1].Isolate)
	require.Equal(t, map[string]string{
		"demo-a":  "172.29.0.2/24",
		"demo-b":  "172.29.0.3/24",
		"demo-c":  "172.29.0.4/24",
		"demo-db": "172.30.0.2/24",
	}, ips(p))
	for _, e := range p.Endpoints {
		require.Equal(t, e.Name, e.Netns)
	}
}

func TestBusyPollAndCPULatencyKeys(t *testing.T) {
	p := parse(t, `name = "t"
[defaults]
busy_poll = false
cpu_latency = true
[[network]]
name = "front"
subnet = "172.20.0.0/24"
`)
	require.False(t, p.Defaults.BusyPoll)
	require.True(t, p.Defaults.CPULatency)
}
