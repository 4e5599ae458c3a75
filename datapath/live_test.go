package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/tap"
)

// withNetwork returns a copy of plan with network n and endpoint ep (when
// ep.Name is set) added.
func withNetwork(plan *config.Plan, n config.Network, ep config.Endpoint) *config.Plan {
	p := *plan
	p.Networks = append(slices.Clone(plan.Networks), n)
	p.Endpoints = slices.Clone(plan.Endpoints)
	if ep.Name != "" {
		p.Endpoints = append(p.Endpoints, ep)
	}
	return &p
}

// TestLiveChangesWhileFramesFlow adds and removes ports, networks and rule
// sets while web streams frames to web2: the stream never stops and the
// race detector sees the copy-on-write hand-overs.
func TestLiveChangesWhileFramesFlow(t *testing.T) {
	plan := testPlan(false)
	tp := start(t, plan)
	web2MAC := mac4(netip.MustParseAddr("172.20.0.11"))
	frame := udp(t, webMAC, web2MAC, "172.20.0.10", "172.20.0.11", 64)
	// web2 announces itself so its MAC is known (no flooding).
	tp.mems["web2"].Inject(arpRequest(t, web2MAC, "172.20.0.11", "172.20.0.1"))
	require.NotNil(t, tp.mems["web2"].Recv(time.Second))

	var got atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the stream
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tp.mems["web"].Inject(frame)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	go func() { // its receiver
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if f := tp.mems["web2"].Recv(10 * time.Millisecond); f != nil {
				got.Add(1)
			}
		}
	}()

	for i := range 30 {
		n := network(fmt.Sprintf("n%d", i), fmt.Sprintf("10.%d.0.0/24", 100+i), false)
		ifc := iface(fmt.Sprintf("x%d", i), n.Name, fmt.Sprintf("10.%d.0.5", 100+i), 24)
		ep := config.Endpoint{Name: ifc.Port, Mode: "bridge", PortSecurity: true, Interfaces: []config.Interface{ifc}}
		next := withNetwork(plan, n, ep)
		require.NoError(t, tp.dp.AddNetwork(n))
		require.Error(t, tp.dp.AddNetwork(n), "twice")
		require.NoError(t, tp.dp.SetPlan(next))
		m := tap.NewMem(64)
		require.NoError(t, tp.dp.AttachInterface(ep, ifc, m))
		require.Error(t, tp.dp.AttachInterface(ep, ifc, tap.NewMem(1)), "a port name is attached once")
		require.ErrorContains(t, tp.dp.RemoveNetwork(n.Name), "still attached")
		require.NoError(t, tp.dp.Detach(ifc.Port))
		require.ErrorContains(t, tp.dp.Detach(ifc.Port), "no port")
		require.NoError(t, tp.dp.SetPlan(plan))
		require.NoError(t, tp.dp.RemoveNetwork(n.Name))
		// db goes and comes back on its own network.
		require.NoError(t, tp.dp.Detach("db"))
		require.NoError(t, tp.dp.AttachEndpoint("db", tap.NewMem(64)))
	}
	before := got.Load()
	require.Eventually(t, func() bool { return got.Load() > before+10 }, 5*time.Second, 10*time.Millisecond, "the stream still flows")
	close(stop)
	wg.Wait()

	var names []string
	for _, p := range tp.dp.Ports() {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"gw/front", "web", "web2", "gw/back", "db", "gw/uplink", "uplink"}, names)
	require.Len(t, tp.dp.Router().Ports(), 3, "two gateways and the uplink")
}

// TestLiveNetworkRoutes: a network added while running is routed to, with
// the rules of the plan given to SetPlan; its removal takes its routes.
func TestLiveNetworkRoutes(t *testing.T) {
	plan := testPlan(false)
	tp := start(t, plan)
	n := network("extra", "172.22.0.0/24", false)
	ifc := iface("x", "extra", "172.22.0.5", 24)
	ep := config.Endpoint{Name: "x", Mode: "bridge", PortSecurity: true, Interfaces: []config.Interface{ifc}}
	require.NoError(t, tp.dp.AddNetwork(n))
	require.NoError(t, tp.dp.SetPlan(withNetwork(plan, n, ep)))
	tp.mems["x"] = tap.NewMem(64)
	require.NoError(t, tp.dp.AttachEndpoint("x", tp.mems["x"]))

	tp.resolveGateway(t, "web", webMAC, "172.20.0.10", "172.20.0.1")
	require.NotNil(t, tp.mems["web2"].Recv(time.Second)) // the flooded request
	tp.mems["web"].Inject(udp(t, webMAC, frontG, "172.20.0.10", "172.22.0.5", 64))
	a := tp.recv(t, "x").Layer(layers.LayerTypeARP).(*layers.ARP)
	require.EqualValues(t, layers.ARPRequest, a.Operation)
	xMAC, extraG := mac4(netip.MustParseAddr("172.22.0.5")), mac4(netip.MustParseAddr("172.22.0.1"))
	tp.mems["x"].Inject(arpReply(t, xMAC, "172.22.0.5", extraG, "172.22.0.1"))
	ip := tp.recv(t, "x").Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.Equal(t, "172.22.0.5", ip.DstIP.String())
	require.EqualValues(t, 63, ip.TTL)
	// The connection is tracked; Detach removes it and the ARP entry.
	require.NotEmpty(t, connsOf(tp.dp.Tracker(), "172.22.0.5"))
	require.NoError(t, tp.dp.Detach("x"))
	require.Empty(t, connsOf(tp.dp.Tracker(), "172.22.0.5"))
	for _, e := range tp.dp.Router().Ports()[len(tp.dp.Router().Ports())-1].Neighbours().Entries() {
		require.NotEqual(t, "172.22.0.5", e.IP)
	}
	for _, e := range tp.dp.Network("extra").Entries() {
		require.NotEqual(t, xMAC, e.MAC, "x's FDB entry went with its port")
	}

	// Without the network, 172.22.0.5 goes the default way (the uplink).
	require.NoError(t, tp.dp.SetPlan(plan))
	require.NoError(t, tp.dp.RemoveNetwork("extra"))
	for _, r := range tp.dp.Router().Routes() {
		require.NotEqual(t, "172.22.0.0/24", r.Prefix.String())
	}
	require.Nil(t, tp.dp.Network("extra"))
}

func connsOf(tr *nat.Tracker, ip string) []nat.Entry {
	var out []nat.Entry
	for _, e := range tr.Table.Entries() {
		if e.Orig.Src.String() == ip || e.Orig.Dst.String() == ip {
			out = append(out, e)
		}
	}
	return out
}
