package config

import (
	"net/netip"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

// Plan is a validated, fully resolved configuration: every default applied,
// every address and MAC assigned, every port named. Nothing that consumes a
// Plan needs to validate or default anything again.
type Plan struct {
	Name      string     `json:"name"`
	Defaults  Defaults   `json:"defaults"`
	Uplink    *Uplink    `json:"uplink,omitempty"`
	DNS       DNS        `json:"dns"`
	Networks  []Network  `json:"networks"`
	Endpoints []Endpoint `json:"endpoints"`
	Rules     []Rule     `json:"rules,omitempty"`
}

// Defaults are the instance-wide settings of [defaults].
type Defaults struct {
	FDBAgeing    clock.Duration `json:"fdb_ageing"` // "300s" in JSON
	FDBMax       int            `json:"fdb_max"`
	ConntrackMax int            `json:"conntrack_max"`
	PublishRange [2]uint16      `json:"publish_range"`
	PortSecurity bool           `json:"port_security"`
	Offload      bool           `json:"offload"`
	// BusyPoll serves the offloading TAPs and the veths from one
	// busy-polling thread (datapath/poll.go); `uswitch run --busy-poll`
	// overrides it.
	BusyPoll bool `json:"busy_poll"`
	// CPULatency lets that thread hold a CPU latency request of 0 µs
	// (/dev/cpu_dma_latency) while it spins: a machine-wide power setting,
	// so off unless asked for; `uswitch run --cpu-latency` overrides it.
	CPULatency bool `json:"cpu_latency"`
}

// Uplink is the router's link to the host.
type Uplink struct {
	Address     netip.Prefix `json:"address"`      // the router's side
	MAC         packet.MAC   `json:"mac"`          // the router side's MAC: 02:42 + address bytes
	HostAddress netip.Prefix `json:"host_address"` // the host side's TAP
	// Address6 and HostAddress6 are the two sides' IPv6 addresses; zero
	// when the uplink is IPv4 only.
	Address6      netip.Prefix `json:"address6,omitzero"`
	HostAddress6  netip.Prefix `json:"host_address6,omitzero"`
	HostDevice    string       `json:"host_device"` // "<name>-up"
	Netns         string       `json:"netns"`       // "" = root namespace
	Routes        bool         `json:"routes"`
	UserlandProxy bool         `json:"userland_proxy"`
}

// DNS is the embedded resolver's settings.
type DNS struct {
	Upstream []string `json:"upstream"`
}

// Network is one L2 segment with its subnet and gateway.
type Network struct {
	Name       string       `json:"name"`
	Subnet     netip.Prefix `json:"subnet"`
	Gateway    netip.Addr   `json:"gateway"`
	GatewayMAC packet.MAC   `json:"gateway_mac"`
	// Subnet6 and Gateway6 make the network dual-stack; zero when it is
	// IPv4 only.
	Subnet6    netip.Prefix `json:"subnet6,omitzero"`
	Gateway6   netip.Addr   `json:"gateway6,omitzero"`
	Masquerade bool         `json:"masquerade"`
	// Masquerade6 masquerades IPv6 leaving through the uplink to its
	// address6; by default true for a unique local subnet6, false for a
	// global one (routed as it is), as Docker decides.
	Masquerade6 bool `json:"masquerade6,omitempty"`
	Internal    bool `json:"internal"`
	Isolate     bool `json:"isolate"`
	DNS         bool `json:"dns"`
	MTU         int  `json:"mtu"`
}

// Endpoint modes.
const (
	ModeBridge    = "bridge"
	ModeNone      = "none"
	ModeHost      = "host"
	ModeContainer = "container"
)

// Link kinds.
const (
	LinkTAP  = "tap"
	LinkVeth = "veth"
)

// Endpoint is one container-like namespace and its interfaces.
type Endpoint struct {
	Name string `json:"name"`
	// Netns is the namespace's `ip netns` name; for container mode it is the
	// target endpoint's, for host mode it is empty.
	Netns        string      `json:"netns"`
	Mode         string      `json:"mode"`
	Container    string      `json:"container,omitempty"` // target of container:<name>
	Link         string      `json:"link"`
	PortSecurity bool        `json:"port_security"`
	Aliases      []string    `json:"aliases,omitempty"`
	Interfaces   []Interface `json:"interfaces,omitempty"`
	Publish      []Publish   `json:"publish,omitempty"`
	// NetnsPath is set for an attachment: the path of a namespace that
	// uswitch neither creates nor deletes (a container runtime's), holding
	// its one interface; Netns is then empty.
	NetnsPath   string `json:"netns_path,omitempty"`
	ContainerID string `json:"container_id,omitempty"` // an attachment's container
}

// Interface is one endpoint interface on one network.
type Interface struct {
	Name    string       `json:"name"`    // eth0, eth1, ...
	Port    string       `json:"port"`    // switch port name: "web", "web/eth1"
	Network string       `json:"network"` // network name
	IP      netip.Addr   `json:"ip"`
	Prefix  netip.Prefix `json:"prefix"` // IP with the subnet's length
	MAC     packet.MAC   `json:"mac"`
	Gateway netip.Addr   `json:"gateway"`
	// IP6, Prefix6 and Gateway6 are the interface's IPv6 address, with the
	// subnet6's length, and its network's gateway6; zero on a network
	// without subnet6.
	IP6      netip.Addr   `json:"ip6,omitzero"`
	Prefix6  netip.Prefix `json:"prefix6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	MTU      int          `json:"mtu"`
}

// Publish is one published port.
type Publish struct {
	HostPort      uint16 `json:"host_port"`
	ContainerPort uint16 `json:"container_port"`
	Proto         string `json:"proto"`  // tcp | udp
	Random        bool   `json:"random"` // host port picked from publish_range
}

// Rule is one [[rule]] entry; empty fields match anything.
type Rule struct {
	Hook   string       `json:"hook"`
	Src    netip.Prefix `json:"src,omitzero"`
	Dst    netip.Prefix `json:"dst,omitzero"`
	Proto  string       `json:"proto,omitempty"`
	Sport  [2]uint16    `json:"sport,omitzero"` // inclusive range; zero = any
	Dport  [2]uint16    `json:"dport,omitzero"`
	In     string       `json:"in,omitempty"`
	Out    string       `json:"out,omitempty"`
	State  []string     `json:"state,omitempty"`
	Action string       `json:"action"`
	To     string       `json:"to,omitempty"` // snat/dnat target address[:port]
	Line   int          `json:"line"`
}

// Network returns the network named name, or nil.
func (p *Plan) Network(name string) *Network {
	for i := range p.Networks {
		if p.Networks[i].Name == name {
			return &p.Networks[i]
		}
	}
	return nil
}
