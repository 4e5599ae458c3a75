package nat

import (
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/uswitch-dev/uswitch/packet"
)

// truncated cuts an IPv4 packet to n bytes, total length included.
func truncated(b []byte, n int) []byte {
	b = clone(b[:n])
	b[2], b[3] = byte(n>>8), byte(n)
	return b
}

var fuzzIfaces = []string{"front", "back", "secure", UplinkName}

// FuzzHooks feeds arbitrary bytes, as an IPv4 packet arriving on any
// iface, through the hooks the way the router does, then through output
// as if the router answered it: whatever the input, nothing panics. The
// tracker lives across inputs, so later inputs meet the connections of
// earlier ones.
func FuzzHooks(f *testing.F) {
	g := newRig(f)
	syn := tcpPkt(f, ap(webAddr, 40000), ap(remoteAddr, 443), fSYN, "")
	dnat := udpPkt(f, ap(hostAddr, 3000), ap(uplinkAddr, 5353), "q")
	sent := clone(dnat)
	for i, seed := range [][]byte{
		syn,
		tcpPkt(f, ap(remoteAddr, 443), ap(uplinkAddr, 40000), fSYN|fACK, ""),
		tcpPkt(f, ap(web2Addr, 1), ap(uplinkAddr, 8080), fSYN, "hairpin"),
		truncated(syn, 30),
		dnat,
		udpNoSum(f, ap(webAddr, 5000), ap(remoteAddr, 53), "q"),
		ping(f, webAddr, remoteAddr, 7, 1, false),
		ping(f, remoteAddr, uplinkAddr, 7, 1, true),
		icmpError(f, webAddr, hostAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0, sent),
		icmpError(f, hostAddr, uplinkAddr, layers.ICMPv4TypeTimeExceeded, 0, 0, syn[:28]),
		icmpError(f, hostAddr, uplinkAddr, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1280,
			ping(f, uplinkAddr, remoteAddr, 7, 1, false)),
		serialize(f, ipLayer(dbAddr, remoteAddr, layers.IPProtocolGRE)),
	} {
		f.Add(byte(i), seed)
	}
	f.Fuzz(func(t *testing.T, iface byte, b []byte) {
		ip := packet.IPv4(b)
		if !ip.Valid() {
			return
		}
		ip = ip[:ip.TotalLen()] // the router cuts the Ethernet padding off
		in := fuzzIfaces[int(iface)%len(fuzzIfaces)]
		var fl Flow
		if g.tr.Prerouting(&fl, ip, in).Action == Accept {
			if out := g.route(ip.Dst()); out == "" {
				g.tr.Filter(&fl, Input, "")
			} else if g.tr.Filter(&fl, Forward, out).Action == Accept {
				g.tr.Postrouting(&fl, ip, out, g.addrs[out].As4())
			}
		}
		g.tr.Output(ip, fuzzIfaces[int(iface>>4)%len(fuzzIfaces)])
		if iface == 0xff {
			g.tr.Table.Sweep(numShards)
			_ = g.tr.Table.Entries()
		}
	})
}
