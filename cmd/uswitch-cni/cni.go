package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/invoke"
	cnins "github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/live"
)

// cmdAdd attaches CNI_IFNAME in CNI_NETNS to the configured network of the
// instance and prints the result.
func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	publish, err := conf.publish()
	if err != nil {
		return err
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("netns %q", args.Netns), err.Error())
	}
	netns.Close()
	// skel refuses the plugin's own namespace only after ADD: by then the
	// instance would have put an interface and a default route in it.
	if o := strings.ToUpper(args.NetnsOverride); o != "TRUE" && o != "1" {
		if same, cerr := cnins.CheckNetNS(args.Netns); cerr != nil {
			return cerr
		} else if same {
			return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("netns %q is the plugin's own network namespace, not a container's", args.Netns), "")
		}
	}

	ctx := context.Background()
	d := newDaemon(conf.socket())
	nw, err := conf.lookupNetwork(ctx, d, types.ErrTryAgainLater)
	if err != nil {
		return err
	}
	req := attachRequest{
		Network:     conf.Network,
		NetnsPath:   args.Netns,
		Ifname:      args.IfName,
		ContainerID: args.ContainerID,
		Link:        conf.Link,
		Publish:     publish,
	}

	// Delegated IPAM, as the reference bridge plugin does: the IPAM
	// plugin's address becomes the endpoint's, and is released again if
	// the attachment fails.
	// (err is the named result throughout, so the deferred releases see
	// the error that is returned.)
	var fromIPAM *current.Result
	if conf.IPAM.Type != "" {
		var r types.Result
		if r, err = ipam.ExecAdd(conf.IPAM.Type, args.StdinData); err != nil {
			return fmt.Errorf("ipam %q: %w", conf.IPAM.Type, err)
		}
		defer func() {
			if err != nil {
				_ = ipam.ExecDel(conf.IPAM.Type, args.StdinData)
			}
		}()
		if fromIPAM, err = current.NewResultFromResult(r); err != nil {
			return fmt.Errorf("ipam %q: converting its result: %w", conf.IPAM.Type, err)
		}
		var addr net.IP
		if addr, err = ipamAddress(fromIPAM); err != nil {
			return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("ipam %q: %v", conf.IPAM.Type, err), "")
		}
		req.IP = addr.String()
	}

	ep, err := d.attach(ctx, req)
	if err != nil {
		return conf.apiError(fmt.Sprintf("attaching container %s (%s) to network %q", args.ContainerID, args.IfName, conf.Network), err, types.ErrTryAgainLater)
	}
	defer func() {
		if err != nil {
			_ = d.detach(ctx, ep.Name)
		}
	}()
	mtu := nw.MTU
	if ok, _ := cniversion.GreaterThanOrEqualTo(conf.CNIVersion, "1.1.0"); !ok {
		mtu = 0 // an interface's mtu is new in 1.1.0
	}
	result, err := attachmentResult(args, ep, mtu)
	if err != nil {
		return err
	}
	if fromIPAM != nil {
		if err := addIPAMRoutes(args, result, fromIPAM); err != nil {
			return err
		}
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// cmdDel removes the attachment. It succeeds when there is nothing to
// remove: the attachment is gone, the netns is gone, or the instance is not
// running (then the interface left in the netns, if any, is deleted).
func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	d := newDaemon(conf.socket())
	eps, err := d.endpoints(ctx)
	switch {
	case isNotRunning(err):
		if err := deleteLink(args.Netns, args.IfName); err != nil {
			return err
		}
	case err != nil:
		return conf.apiError("listing endpoints", err, types.ErrTryAgainLater)
	default:
		if ep, _ := findAttachment(eps, args.ContainerID, args.IfName); ep != nil {
			if err := d.detach(ctx, ep.Name); err != nil {
				return conf.apiError(fmt.Sprintf("removing endpoint %q", ep.Name), err, types.ErrTryAgainLater)
			}
		}
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
			return fmt.Errorf("ipam %q: %w", conf.IPAM.Type, err)
		}
	}
	return nil
}

// cmdCheck verifies the attachment against prevResult: the instance has it
// with the same address and MAC, and the interface in the netns has them
// too, with the result's routes.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs a prevResult", "")
	}
	prev, err := current.GetResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "converting prevResult", err.Error())
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
			return fmt.Errorf("ipam %q: %w", conf.IPAM.Type, err)
		}
	}
	ctx := context.Background()
	eps, err := newDaemon(conf.socket()).endpoints(ctx)
	if err != nil {
		return conf.apiError("listing endpoints", err, types.ErrTryAgainLater)
	}
	ep, ifc := findAttachment(eps, args.ContainerID, args.IfName)
	if ep == nil {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("instance %q has no attachment of container %s (%s)", conf.instance(), args.ContainerID, args.IfName), "")
	}
	if ifc.Network != conf.Network {
		return fmt.Errorf("attachment %q is on network %q, not %q", ep.Name, ifc.Network, conf.Network)
	}

	idx := slices.IndexFunc(prev.Interfaces, func(i *current.Interface) bool {
		return i.Name == args.IfName && i.Sandbox == args.Netns
	})
	if idx < 0 {
		return fmt.Errorf("prevResult has no interface %s in sandbox %s", args.IfName, args.Netns)
	}
	mac, err := net.ParseMAC(prev.Interfaces[idx].Mac)
	if err != nil {
		return fmt.Errorf("prevResult interface %s: %w", args.IfName, err)
	}
	if !strings.EqualFold(ifc.MAC, mac.String()) {
		return fmt.Errorf("attachment %q has MAC %s, prevResult says %s", ep.Name, ifc.MAC, mac)
	}
	var ips []*current.IPConfig
	for _, c := range prev.IPs {
		if c.Interface != nil && *c.Interface == idx {
			ips = append(ips, c)
		}
	}
	if len(ips) == 0 {
		return fmt.Errorf("prevResult has no address on %s", args.IfName)
	}
	for _, c := range ips {
		if a := c.Address.String(); a != ifc.IP && a != ifc.IP6 {
			return fmt.Errorf("attachment %q has address %s, prevResult says %s", ep.Name, ifc.IP, c.Address.String())
		}
	}

	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		link, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("interface %s: %w", args.IfName, err)
		}
		if link.Attrs().HardwareAddr.String() != mac.String() {
			return fmt.Errorf("interface %s has MAC %s, prevResult says %s", args.IfName, link.Attrs().HardwareAddr, mac)
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, ips); err != nil {
			return err
		}
		return ip.ValidateExpectedRoute(prev.Routes)
	})
	if err != nil {
		return fmt.Errorf("netns %s: %w", args.Netns, err)
	}
	return nil
}

// cmdStatus succeeds when the instance answers and has the network.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := conf.lookupNetwork(context.Background(), newDaemon(conf.socket()), types.ErrPluginNotAvailable); err != nil {
		return err
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecStatus(conf.IPAM.Type, args.StdinData); err != nil {
			return fmt.Errorf("ipam %q: %w", conf.IPAM.Type, err)
		}
	}
	return nil
}

// cmdGC removes the attachments to the configured network that are not in
// cni.dev/valid-attachments, then lets a delegated IPAM plugin collect its
// own.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx := context.Background()
	d := newDaemon(conf.socket())
	var errs []error
	if eps, err := d.endpoints(ctx); err != nil {
		errs = append(errs, conf.apiError("listing endpoints", err, types.ErrTryAgainLater))
	} else {
		for _, ep := range eps {
			if ep.ContainerID == "" || len(ep.Interfaces) == 0 || ep.Interfaces[0].Network != conf.Network {
				continue
			}
			valid := slices.ContainsFunc(conf.ValidAttachments, func(a types.GCAttachment) bool {
				return a.ContainerID == ep.ContainerID && a.IfName == ep.Interfaces[0].Name
			})
			if valid {
				continue
			}
			if err := d.detach(ctx, ep.Name); err != nil {
				errs = append(errs, conf.apiError(fmt.Sprintf("removing endpoint %q", ep.Name), err, types.ErrTryAgainLater))
			}
		}
	}
	if conf.IPAM.Type != "" {
		if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
			errs = append(errs, fmt.Errorf("ipam %q: %w", conf.IPAM.Type, err))
		}
	}
	if len(errs) > 0 {
		return firstCNIError(errs)
	}
	return nil
}

// firstCNIError joins errs into one CNI error with the code of the first
// that has one.
func firstCNIError(errs []error) error {
	code, found := types.ErrInternal, false
	var msgs []string
	for _, e := range errs {
		var ce *types.Error
		if !found && errors.As(e, &ce) {
			code, found = ce.Code, true
		}
		msgs = append(msgs, e.Error())
	}
	return types.NewError(code, strings.Join(msgs, "; "), "")
}

// lookupNetwork asks the instance for the configured network. An instance
// that does not answer is an error with code down.
func (c *netConf) lookupNetwork(ctx context.Context, d daemon, down uint) (*live.NetworkInfo, error) {
	nets, err := d.networks(ctx)
	if err != nil {
		return nil, c.apiError("listing networks", err, down)
	}
	names := make([]string, 0, len(nets))
	for i := range nets {
		if nets[i].Name == c.Network {
			return &nets[i], nil
		}
		names = append(names, nets[i].Name)
	}
	code := types.ErrInvalidNetworkConfig
	if down == types.ErrPluginNotAvailable {
		code = down
	}
	return nil, types.NewError(code, fmt.Sprintf("instance %q has no network %q (it has: %s)", c.instance(), c.Network, strings.Join(names, ", ")), "")
}

// apiError turns a failed call to the instance into a CNI error: down is
// the code when the instance is not running (or answers 503), a refusal
// (4xx) is an invalid configuration, anything else an I/O failure.
func (c *netConf) apiError(what string, err error, down uint) error {
	msg := fmt.Sprintf("uswitch instance %q: %s: %v", c.instance(), what, err)
	status := statusOf(err)
	switch {
	case isNotRunning(err):
		return types.NewError(down, fmt.Sprintf("%s: %v", what, err), "")
	case status == http.StatusServiceUnavailable:
		return types.NewError(down, msg, "")
	case status/100 == 4:
		return types.NewError(types.ErrInvalidNetworkConfig, msg, "")
	case status != 0:
		return types.NewError(types.ErrInternal, msg, "")
	default:
		return types.NewError(types.ErrIOFailure, msg, "")
	}
}

// findAttachment returns the endpoint attaching ifname of containerID and
// that interface, or nil.
func findAttachment(eps []live.EndpointInfo, containerID, ifname string) (*live.EndpointInfo, *live.InterfaceInfo) {
	for i := range eps {
		if eps[i].ContainerID != containerID {
			continue
		}
		for j := range eps[i].Interfaces {
			if eps[i].Interfaces[j].Name == ifname {
				return &eps[i], &eps[i].Interfaces[j]
			}
		}
	}
	return nil, nil
}

// ipamAddress is the one IPv4 address a delegated IPAM plugin gave.
func ipamAddress(r *current.Result) (net.IP, error) {
	if len(r.IPs) != 1 || r.IPs[0].Address.IP.To4() == nil {
		got := make([]string, len(r.IPs))
		for i, c := range r.IPs {
			got[i] = c.Address.String()
		}
		return nil, fmt.Errorf("uswitch-cni takes exactly one IPv4 address from IPAM, got [%s]", strings.Join(got, " "))
	}
	return r.IPs[0].Address.IP.To4(), nil
}

// attachmentResult is the 1.1.0 result of an attachment the instance
// made: the interface in the sandbox, its address with the gateway, the
// default route via the gateway and the network's DNS server.
func attachmentResult(args *skel.CmdArgs, ep *live.EndpointInfo, mtu int) (*current.Result, error) {
	_, ifc := findAttachment([]live.EndpointInfo{*ep}, ep.ContainerID, args.IfName)
	if ifc == nil {
		return nil, fmt.Errorf("instance answered endpoint %q without interface %s", ep.Name, args.IfName)
	}
	addr, subnet, err := net.ParseCIDR(ifc.IP)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: address %q: %w", ep.Name, ifc.IP, err)
	}
	gw := net.ParseIP(ifc.Gateway)
	if gw == nil {
		return nil, fmt.Errorf("endpoint %q: gateway %q is not an address", ep.Name, ifc.Gateway)
	}
	mac, err := net.ParseMAC(ifc.MAC)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", ep.Name, err)
	}
	anywhere := net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: args.IfName, Mac: mac.String(), Mtu: mtu, Sandbox: args.Netns}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: net.IPNet{IP: addr, Mask: subnet.Mask}, Gateway: gw}},
		Routes:     []*types.Route{{Dst: anywhere, GW: gw}},
		DNS:        types.DNS{Nameservers: ep.DNS},
	}
	if ifc.IP6 != "" { // a dual-stack network: the IPv6 address and default route too
		addr6, subnet6, err := net.ParseCIDR(ifc.IP6)
		gw6 := net.ParseIP(ifc.Gateway6)
		if err != nil || gw6 == nil {
			return nil, fmt.Errorf("endpoint %q: IPv6 address %q or gateway %q is not valid", ep.Name, ifc.IP6, ifc.Gateway6)
		}
		r.IPs = append(r.IPs, &current.IPConfig{Interface: current.Int(0), Address: net.IPNet{IP: addr6, Mask: subnet6.Mask}, Gateway: gw6})
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gw6})
	}
	return r, nil
}

// addIPAMRoutes adds the routes a delegated IPAM plugin returned (beyond
// the default route the instance made) in the netns, and its routes and DNS
// settings to the result.
func addIPAMRoutes(args *skel.CmdArgs, result *current.Result, fromIPAM *current.Result) error {
	gw := result.IPs[0].Gateway
	var extra []*types.Route
	for _, r := range fromIPAM.Routes {
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		extra = append(extra, r)
	}
	if len(extra) > 0 {
		err := ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
			link, err := netlink.LinkByName(args.IfName)
			if err != nil {
				return fmt.Errorf("interface %s: %w", args.IfName, err)
			}
			for _, r := range extra {
				via := r.GW
				if via == nil {
					via = gw
				}
				route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &r.Dst, Gw: via}
				if err := netlink.RouteAdd(route); err != nil && !errors.Is(err, syscall.EEXIST) {
					return fmt.Errorf("route %s via %s: %w", r.Dst.String(), via, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("netns %s: ipam routes: %w", args.Netns, err)
		}
		result.Routes = append(result.Routes, extra...)
	}
	dns := fromIPAM.DNS
	result.DNS.Nameservers = append(result.DNS.Nameservers, dns.Nameservers...)
	if result.DNS.Domain == "" {
		result.DNS.Domain = dns.Domain
	}
	result.DNS.Search = append(result.DNS.Search, dns.Search...)
	result.DNS.Options = append(result.DNS.Options, dns.Options...)
	return nil
}

// deleteLink deletes ifname in the netns at path; a missing netns or
// interface is not an error.
func deleteLink(path, ifname string) error {
	if path == "" {
		return nil
	}
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		err := ip.DelLinkByName(ifname)
		if errors.Is(err, ip.ErrLinkNotFound) {
			return nil
		}
		return err
	})
	var gone ns.NSPathNotExistErr
	if errors.As(err, &gone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns %s: deleting %s: %w", path, ifname, err)
	}
	return nil
}
