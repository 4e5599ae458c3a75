package nat

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

// A TCP or UDP port of the gateway is the same port of the host, reached
// from the uplink address, and the host's reply comes back from the
// gateway: on front, which masquerades, and on back, which does not.
func TestGatewayIsTheHost(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		net   string
		src   netip.Addr
		gw    netip.Addr
		sport uint16
	}{{"front", webAddr, frontGW, 40000}, {"back", dbAddr, backGW, 40001}} {
		out := g.forward(c.net, UplinkName, tcpPkt(t, ap(c.src, c.sport), ap(c.gw, 22), fSYN, ""))
		requireFlow(t, out, ap(uplinkAddr, c.sport), ap(hostAddr, 22))
		back := g.forward(UplinkName, c.net, tcpPkt(t, ap(hostAddr, 22), ap(uplinkAddr, c.sport), fSYN|fACK, ""))
		requireFlow(t, back, ap(c.gw, 22), ap(c.src, c.sport))

		out = g.forward(c.net, UplinkName, udpPkt(t, ap(c.src, c.sport), ap(c.gw, 53), "q"))
		requireFlow(t, out, ap(uplinkAddr, c.sport), ap(hostAddr, 53))
	}
	// An internal network has no way to the host.
	r := g.pass("secure", tcpPkt(t, ap(vaultAddr, 40000), ap(secureGW, 22), fSYN, ""))
	require.Equal(t, "", r.out, "delivered to the gateway itself")
}

// A published port answers at the gateway of the client's network as at
// the uplink address, from the same network (hairpin) and from another.
func TestPublishedPortAtTheGateway(t *testing.T) {
	g := newRig(t)
	out := g.forward("front", "front", tcpPkt(t, ap(web2Addr, 40000), ap(frontGW, 8080), fSYN, ""))
	requireFlow(t, out, ap(frontGW, 40000), ap(webAddr, 80))
	back := g.forward("front", "front", tcpPkt(t, ap(webAddr, 80), ap(frontGW, 40000), fSYN|fACK, ""))
	requireFlow(t, back, ap(frontGW, 8080), ap(web2Addr, 40000))

	out = g.forward("back", "front", udpPkt(t, ap(dbAddr, 7000), ap(backGW, 5353), "q"))
	requireFlow(t, out, ap(dbAddr, 7000), ap(webAddr, 53))
}

// Where the embedded DNS answers, port 53 of the gateway stays the
// gateway's; so do ICMP and the gateways of other networks.
func TestGatewayKeepsItsDNSAndEcho(t *testing.T) {
	g := newRig(t, func(p *config.Plan) { p.Networks[0].DNS = true })
	for _, pkt := range [][]byte{
		udpPkt(t, ap(webAddr, 5000), ap(frontGW, 53), "q"),
		tcpPkt(t, ap(webAddr, 5000), ap(frontGW, 53), fSYN, ""),
		ping(t, webAddr, frontGW, 1, 1, false),
		tcpPkt(t, ap(webAddr, 5000), ap(backGW, 22), fSYN, ""),
	} {
		r := g.pass("front", pkt)
		require.Equal(t, accept, r.v)
		require.Equal(t, "", r.out, "delivered to the router")
	}
	out := g.forward("front", UplinkName, udpPkt(t, ap(webAddr, 5000), ap(frontGW, 54), "q"))
	requireFlow(t, out, ap(uplinkAddr, 5000), ap(hostAddr, 54))
}

// A host port 53 published does not shadow the embedded DNS at the
// gateway of a network that has it; at the uplink address it is published.
func TestPublishedPort53LeavesTheGatewaysDNS(t *testing.T) {
	g := newRig(t, func(p *config.Plan) {
		p.Networks[0].DNS = true
		p.Endpoints[0].Publish = append(p.Endpoints[0].Publish, config.Publish{HostPort: 53, ContainerPort: 5300, Proto: "udp"})
	})
	r := g.pass("front", udpPkt(t, ap(web2Addr, 5000), ap(frontGW, 53), "q"))
	require.Equal(t, accept, r.v)
	require.Equal(t, "", r.out, "the gateway's DNS")
	out := g.forward("back", "front", udpPkt(t, ap(dbAddr, 5000), ap(backGW, 53), "q"))
	requireFlow(t, out, ap(dbAddr, 5000), ap(webAddr, 5300))
}
