package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/uswitch-dev/uswitch/config"
)

// Changes is what an apply changed: networks, then endpoints, then rules.
type Changes []config.Change

// Apply changes the running instance to match the net.toml data: it
// validates the whole file (a refused file changes nothing), compares it
// with the running plan by network and endpoint (config.Compare), and
// applies the difference: endpoints that go or are recreated are removed,
// then networks that go, then new networks are made, networks changed in
// place get their rules, routes and names, new and recreated endpoints are
// made, and endpoints whose aliases or published ports changed are updated
// in place (their namespace and connections untouched). What does not
// change is not touched. Attachments (CNI) belong to their runtime and
// stay, whatever the file says. Each step leaves a consistent running
// plan, so after a failure halfway, applying either file again (or down)
// completes the change.
func (in *Instance) Apply(ctx context.Context, data []byte) (Changes, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil, refuse(http.StatusServiceUnavailable, "the instance is stopping")
	}
	if _, err := config.Parse(data, "net.toml"); err != nil {
		msg, line := config.Messages(err)
		return nil, &Error{Status: http.StatusBadRequest, Line: line, Msg: msg}
	}
	text := bytes.Clone(data)
	for _, e := range in.plan.Endpoints {
		if e.IsAttachment() {
			text = append(append(text, '\n'), config.EndpointSource(e)...)
		}
	}
	next, err := config.ParseLive(text, "net.toml")
	if err != nil {
		msg, line := config.Messages(err)
		return nil, &Error{Status: http.StatusBadRequest, Line: line, Msg: msg}
	}
	// busy_poll and cpu_latency are the process's (run's flags override
	// them): they take effect at the next run.
	if d := in.plan.Defaults; next.Defaults.BusyPoll != d.BusyPoll || next.Defaults.CPULatency != d.CPULatency {
		in.log.Warn("apply: defaults.busy_poll and cpu_latency take effect at the next run", "busy_poll", d.BusyPoll, "cpu_latency", d.CPULatency)
		next.Defaults.BusyPoll, next.Defaults.CPULatency = d.BusyPoll, d.CPULatency
	}
	next.KeepHostPorts(in.plan)
	diff, err := config.Compare(in.plan, next)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "%v", err)
	}
	if diff.Empty() {
		return Changes{}, nil
	}
	if err := in.apply(ctx, next, diff); err != nil {
		return nil, err
	}
	in.log.Info("applied", "changes", len(diff.Changes))
	return Changes(diff.Changes), nil
}

// apply makes diff's changes, ending with next as the running plan.
// Called with in.mu held.
func (in *Instance) apply(ctx context.Context, next *config.Plan, diff *config.Diff) error {
	// Endpoints that go (container-mode ones before their targets).
	rm := slices.Clone(diff.RemoveEndpoints)
	slices.SortStableFunc(rm, func(a, b config.Endpoint) int {
		return boolInt(b.Mode == config.ModeContainer) - boolInt(a.Mode == config.ModeContainer)
	})
	for _, e := range rm {
		if err := in.removeEndpoint(e.Name); err != nil {
			return err
		}
	}
	for _, n := range diff.RemoveNetworks {
		p := *in.plan
		p.Networks = slices.DeleteFunc(slices.Clone(in.plan.Networks), func(m config.Network) bool { return m.Name == n.Name })
		if err := in.removeNetwork(&p, n); err != nil {
			return err
		}
	}
	for _, n := range diff.AddNetworks {
		p := *in.plan
		p.Networks = append(slices.Clone(in.plan.Networks), n)
		if err := in.addNetwork(&p, n); err != nil {
			return err
		}
	}
	for _, n := range diff.UpdateNetworks {
		if err := in.updateNetwork(n); err != nil {
			return err
		}
	}
	// New endpoints: targets before their container-mode endpoints.
	add := slices.Clone(diff.AddEndpoints)
	slices.SortStableFunc(add, func(a, b config.Endpoint) int {
		return boolInt(a.Mode == config.ModeContainer) - boolInt(b.Mode == config.ModeContainer)
	})
	for _, e := range add {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := *in.plan
		p.Endpoints = append(slices.Clone(in.plan.Endpoints), e)
		if err := in.addEndpoint(ctx, &p, &p.Endpoints[len(p.Endpoints)-1]); err != nil {
			return err
		}
	}
	for _, e := range diff.UpdateEndpoints {
		if err := in.updateEndpoint(e); err != nil {
			return err
		}
	}
	// The file's order, its rules and settings.
	if err := in.dp.SetPlan(next); err != nil {
		return err
	}
	in.plan = next
	return in.tp.RecordPlan(next)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// updateNetwork changes a network's flags in place: the rules and names
// come from the plan, the uplink route from internal, the members'
// resolv.conf from dns. Called with in.mu held.
func (in *Instance) updateNetwork(n config.Network) error {
	old := *in.plan.Network(n.Name)
	p := *in.plan
	p.Networks = slices.Clone(in.plan.Networks)
	p.Networks[slices.IndexFunc(p.Networks, func(m config.Network) bool { return m.Name == n.Name })] = n
	if err := in.dp.SetPlan(&p); err != nil {
		return err
	}
	var err error
	switch {
	case old.Internal && !n.Internal:
		err = in.tp.AddNetworkRoutes(&p, n)
	case !old.Internal && n.Internal:
		err = in.tp.RemoveNetworkRoutes(&p, old)
	}
	if old.DNS != n.DNS { // the members' resolv.conf names the gateway, or not
		for i := range p.Endpoints {
			e := &p.Endpoints[i]
			if slices.ContainsFunc(e.Interfaces, func(ifc config.Interface) bool { return ifc.Network == n.Name }) {
				err = errors.Join(err, in.tp.UpdateEndpointFiles(&p, e))
			}
		}
	}
	in.plan = &p
	err = errors.Join(err, in.tp.RecordPlan(&p))
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}

// updateEndpoint changes an endpoint's aliases, published ports and port
// security in place: its /etc/netns files, names, rules, proxy listeners
// and its ports' security (SetPlan). Called with in.mu held.
func (in *Instance) updateEndpoint(e config.Endpoint) error {
	p := *in.plan
	p.Endpoints = slices.Clone(in.plan.Endpoints)
	i := slices.IndexFunc(p.Endpoints, func(o config.Endpoint) bool { return o.Name == e.Name })
	p.Endpoints[i] = e
	in.stopProxy(e.Name)
	var errs []error
	if err := in.dp.SetPlan(&p); err != nil {
		errs = append(errs, err)
	}
	if err := in.tp.UpdateEndpointFiles(&p, &p.Endpoints[i]); err != nil {
		errs = append(errs, err)
	}
	if err := in.startProxy(&p, &p.Endpoints[i]); err != nil {
		errs = append(errs, err)
	}
	in.plan = &p
	if err := in.tp.RecordPlan(&p); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("endpoint %q: %w", e.Name, err)
	}
	return nil
}
