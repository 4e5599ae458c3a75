package datapath

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// portDrops returns a port's drop counters by reason name.
func (tp *topo) portDrops(port string) map[string]uint64 {
	for _, p := range tp.dp.Ports() {
		if p.Name == port {
			return p.Drops
		}
	}
	return nil
}

// TestAttachEndpointPortSecurity: AttachEndpoint gives each endpoint port
// its own MAC and IP, so spoofing from it is dropped and counted, and an
// endpoint with port_security = false is not checked.
func TestAttachEndpointPortSecurity(t *testing.T) {
	web2MAC := mac4(netip.MustParseAddr("172.20.0.11"))
	t.Run("secure", func(t *testing.T) {
		tp := start(t, testPlan(false))
		// web sends from web2's IP, then claims the gateway's IP in ARP.
		tp.mems["web"].Inject(udp(t, webMAC, packet.Broadcast, "172.20.0.11", "172.20.0.255", 64))
		tp.mems["web"].Inject(arpReply(t, webMAC, "172.20.0.1", web2MAC, "172.20.0.11"))
		tp.mems["web"].Inject(udp(t, web2MAC, packet.Broadcast, "172.20.0.10", "172.20.0.255", 64))
		require.Eventually(t, func() bool {
			d := tp.portDrops("web")
			return d["spoofed-ip"] == 1 && d["spoofed-arp"] == 1 && d["port-security"] == 1
		}, time.Second, 10*time.Millisecond, "%v", tp.portDrops("web"))
		require.Nil(t, tp.mems["web2"].Recv(100*time.Millisecond), "nothing reached web2")
		// its own address passes
		tp.mems["web"].Inject(udp(t, webMAC, packet.Broadcast, "172.20.0.10", "172.20.0.255", 64))
		require.NotNil(t, tp.mems["web2"].Recv(time.Second))
	})
	t.Run("opt-out", func(t *testing.T) {
		plan := testPlan(false)
		plan.Endpoints[0].PortSecurity = false
		tp := start(t, plan)
		tp.mems["web"].Inject(udp(t, webMAC, packet.Broadcast, "172.20.0.11", "172.20.0.255", 64))
		require.NotNil(t, tp.mems["web2"].Recv(time.Second))
		require.Empty(t, tp.portDrops("web"))
	})
}

// TestSetPlanChangesPortSecurity: an applied plan that turns an endpoint's
// port_security off and on again changes its port while it stays attached
// (apply updates it in place).
func TestSetPlanChangesPortSecurity(t *testing.T) {
	plan := testPlan(false)
	tp := start(t, plan)
	spoof := func() { tp.mems["web"].Inject(udp(t, webMAC, packet.Broadcast, "172.20.0.11", "172.20.0.255", 64)) }

	spoof()
	require.Eventually(t, func() bool { return tp.portDrops("web")["spoofed-ip"] == 1 }, time.Second, 10*time.Millisecond)
	require.Nil(t, tp.mems["web2"].Recv(100*time.Millisecond))

	open := *plan
	open.Endpoints = slices.Clone(plan.Endpoints)
	open.Endpoints[0].PortSecurity = false
	require.NoError(t, tp.dp.SetPlan(&open))
	spoof()
	require.NotNil(t, tp.mems["web2"].Recv(time.Second), "port security off: the frame passes")

	require.NoError(t, tp.dp.SetPlan(plan))
	spoof()
	require.Eventually(t, func() bool { return tp.portDrops("web")["spoofed-ip"] == 2 }, time.Second, 10*time.Millisecond)
	require.Nil(t, tp.mems["web2"].Recv(100*time.Millisecond), "port security on again: dropped")
}
