package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Write prints the resolved plan for people, in aligned columns: the
// instance settings, then networks, endpoints (one line per interface),
// published ports and rules (these two only when there are some).
func (p *Plan) Write(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	d := p.Defaults
	fmt.Fprintf(tw, "name\t%s\n", p.Name)
	fmt.Fprintf(tw, "defaults\tfdb_ageing=%s fdb_max=%d conntrack_max=%d publish_range=%d-%d port_security=%t offload=%t busy_poll=%t cpu_latency=%t\n",
		d.FDBAgeing, d.FDBMax, d.ConntrackMax, d.PublishRange[0], d.PublishRange[1], d.PortSecurity, d.Offload, d.BusyPoll, d.CPULatency)
	if u := p.Uplink; u != nil {
		fmt.Fprintf(tw, "uplink\taddress=%s host_device=%s host_address=%s netns=%s routes=%t userland_proxy=%t",
			u.Address, u.HostDevice, u.HostAddress, dash(u.Netns), u.Routes, u.UserlandProxy)
		if u.Address6.IsValid() {
			fmt.Fprintf(tw, " address6=%s host_address6=%s", u.Address6, u.HostAddress6)
		}
		fmt.Fprintln(tw)
	} else {
		fmt.Fprintf(tw, "uplink\t-\n")
	}
	fmt.Fprintf(tw, "dns\tupstream=%s\n", dash(strings.Join(p.DNS.Upstream, ",")))

	fmt.Fprintf(tw, "\nNETWORK\tSUBNET\tGATEWAY\tGATEWAY MAC\tMTU\tFLAGS\n")
	for _, n := range p.Networks {
		var flags []string
		for _, f := range []struct {
			on   bool
			name string
		}{{n.Masquerade, "masquerade"}, {n.Masquerade6, "masquerade6"}, {n.Internal, "internal"}, {n.Isolate, "isolate"}, {n.DNS, "dns"}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		subnet, gw := n.Subnet.String(), n.Gateway.String()
		if n.Subnet6.IsValid() {
			subnet += "," + n.Subnet6.String()
			gw += "," + n.Gateway6.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", n.Name, subnet, gw, n.GatewayMAC, n.MTU, dash(strings.Join(flags, ",")))
	}

	fmt.Fprintf(tw, "\nENDPOINT\tMODE\tNETNS\tLINK\tPORT\tIFACE\tNETWORK\tADDRESS\tMAC\tGATEWAY\tOPTIONS\n")
	for _, e := range p.Endpoints {
		mode := e.Mode
		if e.Mode == ModeContainer {
			mode += ":" + e.Container
		}
		var opts []string
		if len(e.Aliases) > 0 {
			opts = append(opts, "aliases="+strings.Join(e.Aliases, ","))
		}
		if e.Mode == ModeBridge && !e.PortSecurity {
			opts = append(opts, "port_security=false")
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s", e.Name, mode, dash(e.Netns), dash(e.Link))
		if len(e.Interfaces) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", row, dash(strings.Join(opts, " ")))
		}
		for i, ifc := range e.Interfaces {
			if i > 0 {
				row, opts = "\t\t\t", nil
			}
			addrs, gw := ifc.Prefix.String(), ifc.Gateway.String()
			if ifc.Prefix6.IsValid() {
				addrs += "," + ifc.Prefix6.String()
				gw += "," + ifc.Gateway6.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row, ifc.Port, ifc.Name, ifc.Network, addrs, ifc.MAC, gw, strings.Join(opts, " "))
		}
	}

	header := "\nPUBLISHED\tENDPOINT\tHOST PORT\n"
	for _, e := range p.Endpoints {
		for _, pub := range e.Publish {
			fmt.Fprint(tw, header)
			header = ""
			how := "given"
			if pub.Random {
				how = "from publish_range"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", pub, e.Name, how)
		}
	}

	if len(p.Rules) > 0 {
		fmt.Fprintf(tw, "\nRULE\tLINE\tSPEC\n")
	}
	for i, r := range p.Rules {
		fmt.Fprintf(tw, "%d\t%d\t%s\n", i+1, r.Line, r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// String formats a published port as host:container/proto.
func (p Publish) String() string {
	return fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Proto)
}

// String formats a rule like iptables -S: "-A FORWARD -s 172.20.0.0/24 -p
// tcp --dport 5432 -j ACCEPT".
func (r Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-A %s", strings.ToUpper(r.Hook))
	opt := func(flag, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s %s", flag, v)
		}
	}
	if r.Src.IsValid() {
		opt("-s", r.Src.String())
	}
	if r.Dst.IsValid() {
		opt("-d", r.Dst.String())
	}
	opt("-i", r.In)
	opt("-o", r.Out)
	opt("-p", r.Proto)
	opt("--sport", portRange(r.Sport))
	opt("--dport", portRange(r.Dport))
	if len(r.State) > 0 {
		opt("-m conntrack --ctstate", strings.ToUpper(strings.Join(r.State, ",")))
	}
	opt("-j", strings.ToUpper(r.Action))
	switch r.Action {
	case "snat":
		opt("--to-source", r.To)
	case "dnat":
		opt("--to-destination", r.To)
	}
	return b.String()
}

// portRange formats an inclusive range like iptables: "80", "1000:2000";
// "" for any.
func portRange(r [2]uint16) string {
	switch {
	case r == [2]uint16{}:
		return ""
	case r[0] == r[1]:
		return fmt.Sprint(r[0])
	}
	return fmt.Sprintf("%d:%d", r[0], r[1])
}
