package host_test

import (
	"testing"

	"github.com/uswitch-dev/uswitch/dns"
	"github.com/uswitch-dev/uswitch/packet"
)

// FuzzDeliver feeds the host stage, behind the router, two frames cut from
// the input (a connection's first segment, then another) at a gateway
// with DNS over UDP and TCP and a stream service: nothing may panic, and
// the responder's table stays bounded.
func FuzzDeliver(f *testing.F) {
	syn := tcpFrame(f, 1000, 0, true, false, false, nil)
	q := dnsQuery(f, "www")
	f.Add(syn, tcpFrame(f, 1001, 1, false, true, false, append([]byte{0, byte(len(q))}, q...)))
	f.Add(udpFrame(f, webMAC, macFor(frontGW.Addr()), webIP, frontGW.Addr(), 40000, 53, q), []byte{})
	f.Add(syn, tcpFrame(f, 1001, 1, false, true, true, []byte{0xff, 0xff, 1}))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		plan := dnsPlan(false)
		plan.Uplink = nil
		g := newRig(t, plan)
		dns.New(plan, nil, nil).Register(g.host)
		g.host.HandleTCP(7, echoStream{})
		g.learn(t, "gw/front", webIP, webMAC)
		for _, fr := range [][]byte{a, b, a} {
			g.ports["gw/front"].Input(append([]byte(nil), fr...), packet.Offload{})
		}
		if g.host.Conns() > 2 {
			t.Fatalf("%d connections from 2 segments", g.host.Conns())
		}
	})
}
