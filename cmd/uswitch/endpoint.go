package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/live"
)

// changeTimeout bounds one change request (an endpoint add makes a
// namespace and devices; an apply may make many).
const changeTimeout = 2 * time.Minute

// stringList is a flag given several times: --alias a --alias b.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func cmdEndpoint(args []string) error { return endpointCmd(context.Background(), args, os.Stdout) }

// endpointCmd is `uswitch endpoint add|rm|ls`.
func endpointCmd(ctx context.Context, args []string, w io.Writer) error {
	sub, rest := "", []string(nil)
	if len(args) > 0 {
		sub, rest = args[0], args[1:]
	}
	switch sub {
	case "add":
		return endpointAdd(ctx, rest, w)
	case "rm":
		return changeRemove(ctx, "endpoint rm", "/v1/endpoints/", rest)
	case "ls":
		var list []live.EndpointInfo
		return inspect(ctx, "endpoint ls", "/v1/endpoints", rest, w, &list, func() *table { return endpointsTable(list) })
	}
	return subcommandUsage("endpoint", sub, endpointAddSynopsis)
}

// subcommandUsage is `uswitch CMD -h` (help, exit 0) or an unknown
// subcommand of CMD (a usage mistake, exit 2), for endpoint and network.
func subcommandUsage(cmd, sub, addSynopsis string) error {
	text := fmt.Sprintf("usage: uswitch %[1]s add %[2]s\n       uswitch %[1]s rm %[3]s\n       uswitch %[1]s ls %[4]s\n",
		cmd, addSynopsis, removeSynopsis, inspectSynopsis)
	switch sub {
	case "-h", "-help", "--help":
		return helpError{text}
	}
	err := fmt.Errorf("unknown subcommand %q (want add, rm or ls)", sub)
	if sub == "" {
		err = errors.New("want a subcommand: add, rm or ls")
	}
	return usageError{err, fmt.Sprintf("uswitch %s: %v\n%s", cmd, err, text)}
}

// nameAndFlags parses `NAME [flags]` or `[flags] NAME` and returns NAME.
func nameAndFlags(fs *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseArgs(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "" || len(rest) > 0 {
		return "", flagError(fs, errors.New("want one NAME"))
	}
	return name, nil
}

// endpointAdd is `uswitch endpoint add`: POST /v1/endpoints.
func endpointAdd(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("endpoint add", endpointAddSynopsis)
	var f inspectFlags
	f.register(fs)
	network := fs.String("network", "", "the `NETWORK` to attach it to")
	ip := fs.String("ip", "", "its `IP` (default: the lowest free one)")
	ip6 := fs.String("ip6", "", "its `IP6` on a network with subnet6 (default: the lowest free one)")
	mac := fs.String("mac", "", "its `MAC` (default: 02:42 and the IP's four bytes)")
	link := fs.String("link", "", "tap or veth (default tap)")
	var aliases, publish stringList
	fs.Var(&aliases, "alias", "an extra DNS `NAME` (repeat for more)")
	fs.Var(&publish, "publish", "a published port `SPEC`, like 8080:80/tcp (repeat for more)")
	name, err := nameAndFlags(fs, args)
	if err != nil {
		return err
	}
	fields := map[string]any{"name": name}
	for k, v := range map[string]string{"network": *network, "ip": *ip, "ip6": *ip6, "mac": *mac, "link": *link} {
		if v != "" {
			fields[k] = v
		}
	}
	if len(aliases) > 0 {
		fields["aliases"] = []string(aliases)
	}
	if len(publish) > 0 {
		fields["publish"] = []string(publish)
	}
	var info live.EndpointInfo
	if err := post(ctx, &f, "/v1/endpoints", fields, &info); err != nil {
		return err
	}
	return render(w, f.output, info, func() *table { return endpointsTable([]live.EndpointInfo{info}) })
}

// post sends fields as JSON to path of the instance f names.
func post(ctx context.Context, f *inspectFlags, path string, fields map[string]any, out any) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	return c.Post(ctx, path, "application/json", body, out)
}

// changeRemove is `uswitch endpoint rm NAME` and `uswitch network rm NAME`.
func changeRemove(ctx context.Context, cmd, prefix string, args []string) error {
	fs := newFlagSet(cmd, removeSynopsis)
	var f inspectFlags
	f.register(fs)
	name, err := nameAndFlags(fs, args)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	return c.Delete(ctx, prefix+control.PathEscape(name))
}

// endpointsTable lays out endpoints as run's summary does: one row per
// interface.
func endpointsTable(list []live.EndpointInfo) *table {
	t := newTable("ENDPOINT", "MODE", "NETNS", "INTERFACE", "PORT", "NETWORK", "IP", "MAC", "PUBLISH")
	for _, e := range list {
		netns := e.Netns
		if netns == "" {
			netns = dashIf(e.NetnsPath)
		}
		publish := dashIf(strings.Join(e.Publish, ","))
		if len(e.Interfaces) == 0 {
			t.add(e.Name, e.Mode, netns, "-", "-", "-", "-", "-", publish)
		}
		for i, ifc := range e.Interfaces {
			if i > 0 {
				publish = ""
			}
			ip := ifc.IP
			if ifc.IP6 != "" {
				ip += "," + ifc.IP6
			}
			t.add(e.Name, e.Mode, netns, ifc.Name, ifc.Port, ifc.Network, ip, ifc.MAC, publish)
		}
	}
	return t
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdNetwork(args []string) error { return networkCmd(context.Background(), args, os.Stdout) }

// networkCmd is `uswitch network add|rm|ls`.
func networkCmd(ctx context.Context, args []string, w io.Writer) error {
	sub, rest := "", []string(nil)
	if len(args) > 0 {
		sub, rest = args[0], args[1:]
	}
	switch sub {
	case "add":
		return networkAdd(ctx, rest, w)
	case "rm":
		return changeRemove(ctx, "network rm", "/v1/networks/", rest)
	case "ls":
		var list []live.NetworkInfo
		return inspect(ctx, "network ls", "/v1/networks", rest, w, &list, func() *table { return networksTable(list) })
	}
	return subcommandUsage("network", sub, networkAddSynopsis)
}

// networkAdd is `uswitch network add`: POST /v1/networks. Only the flags
// given are sent; the others keep the defaults of [[network]].
func networkAdd(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("network add", networkAddSynopsis)
	var f inspectFlags
	f.register(fs)
	subnet := fs.String("subnet", "", "its `SUBNET`, like 172.21.0.0/24")
	gateway := fs.String("gateway", "", "the router's `ADDRESS` on it (default: the first of the subnet)")
	subnet6 := fs.String("subnet6", "", "its IPv6 `SUBNET6`, like fd00:21::/64 (default: IPv4 only)")
	gateway6 := fs.String("gateway6", "", "the router's IPv6 `ADDRESS` on it (default: the subnet6's ::1)")
	isolate := fs.Bool("isolate", true, "no forwarding to other networks")
	internal := fs.Bool("internal", false, "no route to the uplink")
	masquerade := fs.Bool("masquerade", true, "SNAT to the uplink address on the way out")
	masquerade6 := fs.Bool("masquerade6", false, "NAT66 to the uplink's address6 on the way out (default: true for a unique local subnet6)")
	dnsOn := fs.Bool("dns", true, "the embedded DNS on the gateway")
	mtu := fs.Int("mtu", 1500, "the MTU")
	name, err := nameAndFlags(fs, args)
	if err != nil {
		return err
	}
	fields := map[string]any{"name": name}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "subnet":
			fields["subnet"] = *subnet
		case "gateway":
			fields["gateway"] = *gateway
		case "subnet6":
			fields["subnet6"] = *subnet6
		case "gateway6":
			fields["gateway6"] = *gateway6
		case "isolate":
			fields["isolate"] = *isolate
		case "internal":
			fields["internal"] = *internal
		case "masquerade":
			fields["masquerade"] = *masquerade
		case "masquerade6":
			fields["masquerade6"] = *masquerade6
		case "dns":
			fields["dns"] = *dnsOn
		case "mtu":
			fields["mtu"] = *mtu
		}
	})
	var info live.NetworkInfo
	if err := post(ctx, &f, "/v1/networks", fields, &info); err != nil {
		return err
	}
	return render(w, f.output, info, func() *table { return networksTable([]live.NetworkInfo{info}) })
}

// networksTable lays out networks, one a row.
func networksTable(list []live.NetworkInfo) *table {
	t := newTable("NETWORK", "SUBNET", "GATEWAY", "MTU>", "FLAGS")
	for _, n := range list {
		var flags []string
		for _, fl := range []struct {
			on   bool
			name string
		}{{n.Masquerade, "masquerade"}, {n.Masquerade6, "masquerade6"}, {n.Internal, "internal"}, {n.Isolate, "isolate"}, {n.DNS, "dns"}} {
			if fl.on {
				flags = append(flags, fl.name)
			}
		}
		subnet, gw := n.Subnet, n.Gateway
		if n.Subnet6 != "" {
			subnet, gw = subnet+","+n.Subnet6, gw+","+n.Gateway6
		}
		t.add(n.Name, subnet, gw, strconv.Itoa(n.MTU), dashIf(strings.Join(flags, ",")))
	}
	return t
}
