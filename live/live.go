// Package live changes a running instance: it adds and removes endpoints
// (a container's namespace, or an attachment in a namespace of a container
// runtime's) and networks while frames flow, and applies a whole new
// net.toml by its difference with the running plan. Each change is
// validated first as `check` validates a file (the running plan written
// back as a net.toml, with the change made to that text, parsed again), so
// a refused change creates nothing; then topo makes the kernel objects
// (recording each in the state file before it is made), the datapath
// attaches the ports and swaps in the recompiled rules and DNS names, and
// the userland proxy listens for the published ports. Changes are
// serialized among themselves; the datapath never stops for them.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package live

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/proxy"
	"github.com/uswitch-dev/uswitch/topo"
)

// Instance is a running instance that can be changed.
type Instance struct {
	ctx context.Context // the run's: proxies live as long
	tp  *topo.Topology
	dp  *datapath.Datapath
	log *slog.Logger

	mu      sync.Mutex // serializes changes
	plan    *config.Plan
	proxies map[string]*proxy.Proxy // by endpoint name
	closed  bool
}

// New returns the instance running plan on tp and dp. Call StartProxies
// once its ports are attached.
func New(ctx context.Context, plan *config.Plan, tp *topo.Topology, dp *datapath.Datapath, log *slog.Logger) *Instance {
	return &Instance{ctx: ctx, tp: tp, dp: dp, log: log, plan: plan, proxies: map[string]*proxy.Proxy{}}
}

// Plan returns the running plan.
func (in *Instance) Plan() *config.Plan {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.plan
}

// StartProxies starts the userland proxy of every endpoint with published
// ports, when the uplink has userland_proxy.
func (in *Instance) StartProxies() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := range in.plan.Endpoints {
		if err := in.startProxy(in.plan, &in.plan.Endpoints[i]); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the proxies; no change is made after it.
func (in *Instance) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	for name, px := range in.proxies {
		px.Close()
		delete(in.proxies, name)
	}
}

// startProxy listens for ep's published ports. Called with in.mu held.
func (in *Instance) startProxy(p *config.Plan, ep *config.Endpoint) error {
	u := p.Uplink
	if u == nil || !u.UserlandProxy || len(ep.Publish) == 0 || ep.Mode != config.ModeBridge {
		return nil
	}
	one := *p
	one.Endpoints = []config.Endpoint{*ep}
	maps := proxy.Mappings(&one)
	if len(maps) == 0 {
		return nil
	}
	px, err := proxy.Start(in.ctx, u.Netns, maps, in.log)
	if err != nil {
		return fmt.Errorf("endpoint %q: userland proxy: %w", ep.Name, err)
	}
	in.proxies[ep.Name] = px
	return nil
}

// stopProxy stops ep's proxy, if it has one. Called with in.mu held.
func (in *Instance) stopProxy(name string) {
	if px := in.proxies[name]; px != nil {
		px.Close()
		delete(in.proxies, name)
	}
}

// Error is a refused change: what the API answers with its status, and the
// line of the caller's file it is about (0: none).
type Error struct {
	Status int
	Line   int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the control API answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

// ErrorLine is the line of the caller's file e is about, 0 when none.
func (e *Error) ErrorLine() int { return e.Line }

func refuse(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// invalid turns a Parse error of a text that is not the caller's (the
// running plan with a change) into a 400 without line.
func invalid(err error) *Error {
	msg, _ := config.Messages(err)
	return &Error{Status: http.StatusBadRequest, Msg: msg}
}

// EndpointInfo is an endpoint as the API shows it (POST /v1/endpoints'
// answer, GET /v1/endpoints' rows).
type EndpointInfo struct {
	Name        string          `json:"name"`
	Mode        string          `json:"mode"`
	Netns       string          `json:"netns,omitempty"`
	NetnsPath   string          `json:"netns_path,omitempty"`
	ContainerID string          `json:"container_id,omitempty"`
	Interfaces  []InterfaceInfo `json:"interfaces"`
	DNS         []string        `json:"dns,omitempty"`
	Publish     []string        `json:"publish,omitempty"`
}

// InterfaceInfo is one interface of an EndpointInfo.
type InterfaceInfo struct {
	Name    string `json:"name"`
	Port    string `json:"port"`
	Network string `json:"network"`
	IP      string `json:"ip"` // with the prefix length: 172.20.0.5/24
	MAC     string `json:"mac"`
	Gateway string `json:"gateway"`
	// IP6 (with the prefix length) and Gateway6 are set on a network with
	// subnet6.
	IP6      string `json:"ip6,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
}

// NetworkInfo is a network as the API shows it.
type NetworkInfo struct {
	Name       string `json:"name"`
	Subnet     string `json:"subnet"`
	Gateway    string `json:"gateway"`
	Subnet6    string `json:"subnet6,omitempty"`
	Gateway6   string `json:"gateway6,omitempty"`
	DNS        bool   `json:"dns"`
	Internal   bool   `json:"internal"`
	Isolate    bool   `json:"isolate"`
	Masquerade bool   `json:"masquerade"`
	// Masquerade6 is the network's masquerade6 (only with subnet6).
	Masquerade6 bool `json:"masquerade6,omitempty"`
	MTU         int  `json:"mtu"`
}

// EndpointOf describes endpoint ep of plan p.
func EndpointOf(p *config.Plan, ep *config.Endpoint) EndpointInfo {
	info := EndpointInfo{Name: ep.Name, Mode: ep.Mode, Netns: ep.Netns, NetnsPath: ep.NetnsPath, ContainerID: ep.ContainerID, Interfaces: []InterfaceInfo{}}
	if ep.Mode == config.ModeContainer {
		info.Mode += ":" + ep.Container
	}
	if info.NetnsPath == "" && ep.Netns != "" {
		info.NetnsPath = filepath.Join("/var/run/netns", ep.Netns)
	}
	for _, ifc := range ep.Interfaces {
		ii := InterfaceInfo{Name: ifc.Name, Port: ifc.Port, Network: ifc.Network,
			IP: ifc.Prefix.String(), MAC: ifc.MAC.String(), Gateway: ifc.Gateway.String()}
		if ifc.Prefix6.IsValid() {
			ii.IP6, ii.Gateway6 = ifc.Prefix6.String(), ifc.Gateway6.String()
		}
		info.Interfaces = append(info.Interfaces, ii)
		if n := p.Network(ifc.Network); n != nil && n.DNS && !slices.Contains(info.DNS, ifc.Gateway.String()) {
			info.DNS = append(info.DNS, ifc.Gateway.String())
		}
	}
	for _, pb := range ep.Publish {
		info.Publish = append(info.Publish, fmt.Sprintf("%d:%d/%s", pb.HostPort, pb.ContainerPort, pb.Proto))
	}
	return info
}

// NetworkOf describes network n.
func NetworkOf(n config.Network) NetworkInfo {
	info := NetworkInfo{Name: n.Name, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(), DNS: n.DNS,
		Internal: n.Internal, Isolate: n.Isolate, Masquerade: n.Masquerade, MTU: n.MTU}
	if n.Subnet6.IsValid() {
		info.Subnet6, info.Gateway6 = n.Subnet6.String(), n.Gateway6.String()
		info.Masquerade6 = n.Masquerade6
	}
	return info
}

// Endpoints lists the running endpoints in plan order.
func (in *Instance) Endpoints() []EndpointInfo {
	p := in.Plan()
	out := []EndpointInfo{}
	for i := range p.Endpoints {
		out = append(out, EndpointOf(p, &p.Endpoints[i]))
	}
	return out
}

// Networks lists the running networks in plan order.
func (in *Instance) Networks() []NetworkInfo {
	p := in.Plan()
	out := []NetworkInfo{}
	for _, n := range p.Networks {
		out = append(out, NetworkOf(n))
	}
	return out
}

// DecodeFields decodes a JSON object of a request body, numbers kept exact.
func DecodeFields(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, refuse(http.StatusBadRequest, "request body: want a JSON object: %v", err)
	}
	if fields == nil {
		return nil, refuse(http.StatusBadRequest, "request body: want a JSON object, not null")
	}
	return fields, nil
}

// AddEndpoint adds the endpoint whose [[endpoint]] keys are fields (plus,
// for an attachment, netns_path, ifname and container_id; with
// container_id and no name, the name is config.AttachmentName's).
func (in *Instance) AddEndpoint(ctx context.Context, fields map[string]any) (EndpointInfo, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return EndpointInfo{}, refuse(http.StatusServiceUnavailable, "the instance is stopping")
	}
	_, attach := fields["netns_path"]
	if !attach {
		for _, k := range []string{"ifname", "container_id"} {
			if _, ok := fields[k]; ok {
				return EndpointInfo{}, refuse(http.StatusBadRequest, "%s applies only to an attachment (with netns_path)", k)
			}
		}
	}
	if _, named := fields["name"]; !named {
		if id, ok := fields["container_id"].(string); ok {
			ifname, _ := fields["ifname"].(string)
			fields["name"] = config.AttachmentName(id, ifname)
		}
	}
	name, _ := fields["name"].(string)
	if name != "" && slices.ContainsFunc(in.plan.Endpoints, func(e config.Endpoint) bool { return e.Name == name }) {
		return EndpointInfo{}, refuse(http.StatusConflict, "endpoint %q already exists", name)
	}
	tbl, err := config.TableSource("endpoint", fields)
	if err != nil {
		return EndpointInfo{}, refuse(http.StatusBadRequest, "request body: %v", err)
	}
	next, err := config.ParseLive(append(in.plan.Source(), append([]byte("\n"), tbl...)...), "endpoint")
	if err != nil {
		return EndpointInfo{}, invalid(err)
	}
	next.Rules = in.plan.Rules // the same rules, their lines those of the file
	ep := &next.Endpoints[len(next.Endpoints)-1]
	if ep.IsAttachment() {
		if _, err := os.Stat(ep.NetnsPath); err != nil {
			return EndpointInfo{}, refuse(http.StatusBadRequest, "endpoint %q: netns_path: %v", ep.Name, err)
		}
	}
	if err := in.addEndpoint(ctx, next, ep); err != nil {
		return EndpointInfo{}, err
	}
	return EndpointOf(next, ep), nil
}

// addEndpoint makes ep of next, the running plan with ep added, and makes
// next the running plan; on error it undoes what it did. Called with in.mu
// held.
func (in *Instance) addEndpoint(ctx context.Context, next *config.Plan, ep *config.Endpoint) error {
	prev := in.plan
	if err := in.tp.RecordPlan(next); err != nil {
		return err
	}
	ports, err := in.tp.AddEndpoint(ctx, next, ep)
	if err != nil {
		return errors.Join(err, in.tp.RecordPlan(prev))
	}
	undo := func(err error) error {
		for _, pd := range ports {
			_ = in.dp.Detach(pd.Port)
		}
		in.stopProxy(ep.Name)
		if serr := in.dp.SetPlan(prev); serr != nil {
			err = errors.Join(err, serr)
		}
		if rerr := in.tp.RemoveEndpoint(next, ep); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing what was made: %w", rerr))
		}
		return errors.Join(err, in.tp.RecordPlan(prev))
	}
	// Rules and names first, so the first frame of the port finds them.
	if err := in.dp.SetPlan(next); err != nil {
		return undo(err)
	}
	for _, pd := range ports {
		i := slices.IndexFunc(ep.Interfaces, func(ifc config.Interface) bool { return ifc.Port == pd.Port })
		if i < 0 {
			return undo(fmt.Errorf("endpoint %q: port %q is not in the plan", ep.Name, pd.Port))
		}
		if err := in.dp.AttachInterface(*ep, ep.Interfaces[i], pd.Dev); err != nil {
			return undo(fmt.Errorf("endpoint %q: %w", ep.Name, err))
		}
	}
	if err := in.startProxy(next, ep); err != nil {
		return undo(err)
	}
	in.plan = next
	in.log.Info("endpoint added", "endpoint", ep.Name, "ports", len(ports))
	return nil
}

// RemoveEndpoint removes endpoint name and all that belongs to it.
func (in *Instance) RemoveEndpoint(ctx context.Context, name string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return refuse(http.StatusServiceUnavailable, "the instance is stopping")
	}
	i := slices.IndexFunc(in.plan.Endpoints, func(e config.Endpoint) bool { return e.Name == name })
	if i < 0 {
		return refuse(http.StatusNotFound, "no endpoint %q", name)
	}
	for _, e := range in.plan.Endpoints {
		if e.Mode == config.ModeContainer && e.Container == name {
			return refuse(http.StatusConflict, "endpoint %q shares the namespace of endpoint %q (mode = \"container:%s\"): remove it first", e.Name, name, name)
		}
	}
	return in.removeEndpoint(name)
}

// removeEndpoint removes endpoint name from the running plan and the
// instance. Called with in.mu held.
func (in *Instance) removeEndpoint(name string) error {
	i := slices.IndexFunc(in.plan.Endpoints, func(e config.Endpoint) bool { return e.Name == name })
	ep := in.plan.Endpoints[i]
	next := *in.plan
	next.Endpoints = slices.Delete(slices.Clone(in.plan.Endpoints), i, i+1)
	in.stopProxy(name)
	var errs []error
	for _, ifc := range ep.Interfaces {
		if err := in.dp.Detach(ifc.Port); err != nil {
			errs = append(errs, err)
		}
	}
	if err := in.dp.SetPlan(&next); err != nil {
		errs = append(errs, err)
	}
	if err := in.tp.RemoveEndpoint(in.plan, &ep); err != nil {
		errs = append(errs, err)
	}
	in.plan = &next
	if err := in.tp.RecordPlan(&next); err != nil {
		errs = append(errs, err)
	}
	in.log.Info("endpoint removed", "endpoint", name)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("endpoint %q: %w", name, err)
	}
	return nil
}

// AddNetwork adds the network whose [[network]] keys are fields.
func (in *Instance) AddNetwork(ctx context.Context, fields map[string]any) (NetworkInfo, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return NetworkInfo{}, refuse(http.StatusServiceUnavailable, "the instance is stopping")
	}
	if name, _ := fields["name"].(string); name != "" && in.plan.Network(name) != nil {
		return NetworkInfo{}, refuse(http.StatusConflict, "network %q already exists", name)
	}
	tbl, err := config.TableSource("network", fields)
	if err != nil {
		return NetworkInfo{}, refuse(http.StatusBadRequest, "request body: %v", err)
	}
	next, err := config.ParseLive(append(in.plan.Source(), append([]byte("\n"), tbl...)...), "network")
	if err != nil {
		return NetworkInfo{}, invalid(err)
	}
	next.Rules = in.plan.Rules
	n := next.Networks[len(next.Networks)-1]
	if err := in.addNetwork(next, n); err != nil {
		return NetworkInfo{}, err
	}
	return NetworkOf(n), nil
}

// addNetwork makes network n of next and makes next the running plan.
// Called with in.mu held.
func (in *Instance) addNetwork(next *config.Plan, n config.Network) error {
	if err := in.tp.RecordPlan(next); err != nil {
		return err
	}
	if err := in.dp.AddNetwork(n); err != nil {
		return errors.Join(err, in.tp.RecordPlan(in.plan))
	}
	if err := in.dp.SetPlan(next); err != nil {
		_ = in.dp.RemoveNetwork(n.Name)
		return err
	}
	if err := in.tp.AddNetworkRoutes(next, n); err != nil {
		err = fmt.Errorf("network %q: %w", n.Name, err)
		if serr := in.dp.SetPlan(in.plan); serr != nil {
			err = errors.Join(err, serr)
		}
		_ = in.dp.RemoveNetwork(n.Name)
		return errors.Join(err, in.tp.RecordPlan(in.plan))
	}
	in.plan = next
	in.log.Info("network added", "network", n.Name, "subnet", n.Subnet)
	return nil
}

// RemoveNetwork removes network name; refused while an endpoint is on it.
func (in *Instance) RemoveNetwork(ctx context.Context, name string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return refuse(http.StatusServiceUnavailable, "the instance is stopping")
	}
	n := in.plan.Network(name)
	if n == nil {
		return refuse(http.StatusNotFound, "no network %q", name)
	}
	var on []string
	for _, e := range in.plan.Endpoints {
		if slices.ContainsFunc(e.Interfaces, func(ifc config.Interface) bool { return ifc.Network == name }) {
			on = append(on, e.Name)
		}
	}
	if len(on) > 0 {
		return refuse(http.StatusConflict, "network %q still has endpoints: %v", name, on)
	}
	next := *in.plan
	next.Networks = slices.DeleteFunc(slices.Clone(in.plan.Networks), func(m config.Network) bool { return m.Name == name })
	if _, err := config.ParseLive(next.Source(), "network"); err != nil {
		return invalid(err) // a rule names it
	}
	return in.removeNetwork(&next, *n)
}

// removeNetwork removes network n, on which no endpoint is, making next
// the running plan. Called with in.mu held.
func (in *Instance) removeNetwork(next *config.Plan, n config.Network) error {
	var errs []error
	if err := in.tp.RemoveNetworkRoutes(in.plan, n); err != nil {
		errs = append(errs, err)
	}
	if err := in.dp.SetPlan(next); err != nil {
		errs = append(errs, err)
	}
	if err := in.dp.RemoveNetwork(n.Name); err != nil {
		errs = append(errs, err)
	}
	in.plan = next
	if err := in.tp.RecordPlan(next); err != nil {
		errs = append(errs, err)
	}
	in.log.Info("network removed", "network", n.Name)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}

// NetnsGone lets go of the ports of the endpoints whose namespace, netns,
// was deleted from outside while the instance runs (topo.WatchNetns): it
// detaches them, which closes their TAPs, so the namespace those held ends
// as it would with the kernel's veth. The endpoints stay in the plan, so
// that `down` or the next run cleans up after them as usual.
func (in *Instance) NetnsGone(netns string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	for _, ep := range in.plan.Endpoints {
		if ep.Netns != netns || ep.Mode != config.ModeBridge {
			continue
		}
		for _, ifc := range ep.Interfaces {
			if err := in.dp.Detach(ifc.Port); err == nil {
				in.log.Warn("namespace deleted from outside; its port is detached", "endpoint", ep.Name, "netns", netns, "port", ifc.Port)
			}
		}
	}
}
