package main

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/uswitch-dev/uswitch/control"
)

// netConf is the plugin's network configuration.
type netConf struct {
	types.PluginConf

	// Instance names the running uswitch instance; its control socket is
	// /run/uswitch/<instance>.sock unless Socket is set.
	Instance string `json:"instance"`
	// Network is the instance's network the container joins.
	Network string `json:"network"`
	// Socket overrides the control socket path.
	Socket string `json:"socket,omitempty"`
	// Link is the endpoint's link kind, tap (the instance's default) or veth.
	Link string `json:"link,omitempty"`

	RuntimeConfig struct {
		PortMappings []portMapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig"`
}

// portMapping is one entry of the portMappings capability, as runtimes
// send it (the reference portmap plugin's format).
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// loadConf decodes and validates the configuration on stdin, including a
// prevResult when there is one.
func loadConf(stdin []byte) (*netConf, error) {
	var c netConf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decoding the network configuration", err.Error())
	}
	if err := cniversion.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decoding prevResult", err.Error())
	}
	bad := func(format string, a ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("network %q: ", c.Name)+fmt.Sprintf(format, a...), "")
	}
	switch {
	case c.Instance == "" && c.Socket == "":
		return nil, bad(`"instance" (or "socket") is required: it names the running uswitch instance`)
	case c.Instance != "" && strings.ContainsAny(c.Instance, "/\x00"):
		return nil, bad(`"instance" %q is not an instance name`, c.Instance)
	case c.Network == "":
		return nil, bad(`"network" is required: it names a network of the instance`)
	case c.Link != "" && c.Link != "tap" && c.Link != "veth":
		return nil, bad(`"link" %q is not tap or veth`, c.Link)
	}
	return &c, nil
}

// instance names the configured instance in messages: its name, or its
// socket when only that is given.
func (c *netConf) instance() string {
	if c.Instance != "" {
		return c.Instance
	}
	return c.Socket
}

// socket is the control socket of the configured instance.
func (c *netConf) socket() string {
	if c.Socket != "" {
		return c.Socket
	}
	return control.SocketPath(c.Instance)
}

// publish turns the portMappings capability into publish specs
// ("8080:80/tcp"; "80/tcp" for a host port the instance picks). A host IP
// other than the unspecified address is refused: an instance publishes on
// its uplink address (and, with its userland proxy, on every host address).
func (c *netConf) publish() ([]string, error) {
	var specs []string
	for _, pm := range c.RuntimeConfig.PortMappings {
		if pm.HostIP != "" {
			if ip := net.ParseIP(pm.HostIP); ip == nil || !ip.IsUnspecified() {
				return nil, types.NewError(types.ErrUnsupportedField,
					fmt.Sprintf("portMappings: hostIP %q: a uswitch instance publishes on its uplink address and every host address, not on one chosen address", pm.HostIP), "")
			}
		}
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		spec := fmt.Sprintf("%d:%d/%s", pm.HostPort, pm.ContainerPort, proto)
		if pm.HostPort == 0 {
			spec = fmt.Sprintf("%d/%s", pm.ContainerPort, proto)
		}
		// A runtime may send a mapping once per address family
		// (0.0.0.0 and ::): it is one publish.
		if !slices.Contains(specs, spec) {
			specs = append(specs, spec)
		}
	}
	return specs, nil
}
