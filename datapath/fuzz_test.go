package datapath

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"uswitch/clock"
	"uswitch/packet"
	"uswitch/tap"
)

// fuzzPorts are the endpoint ports of testPlan an input can be injected on.
var fuzzPorts = []string{"web", "web2", "db"}

// fuzzTopo is a running datapath of testPlan (web2 without port security,
// so the unchecked path is reached too) with in-memory ports, kept across
// fuzz inputs so later inputs meet the FDB, ARP and connection state of
// earlier ones.
type fuzzTopo struct {
	dp   *Datapath
	mems map[string]*tap.Mem
}

func newFuzzTopo(tb testing.TB) *fuzzTopo {
	plan := testPlan(false)
	plan.Endpoints[1].PortSecurity = false
	dp, err := New(plan, &clock.Fake{}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ft := &fuzzTopo{dp: dp, mems: map[string]*tap.Mem{}}
	for _, p := range fuzzPorts {
		m := tap.NewMem(64)
		ft.mems[p] = m
		if err := dp.AttachEndpoint(p, m); err != nil {
			tb.Fatal(err)
		}
	}
	ft.mems[UplinkPort] = tap.NewMem(64)
	if err := dp.AttachUplink(ft.mems[UplinkPort]); err != nil {
		tb.Fatal(err)
	}
	// The timers run too (ARP retries, connection sweep, FDB ageing), so
	// they race with the readers under -race.
	dp.Start(5 * time.Millisecond)
	tb.Cleanup(func() { dp.Close() })
	return ft
}

func (ft *fuzzTopo) rx(port string) uint64 {
	for _, p := range ft.dp.Ports() {
		if p.Name == port {
			return p.RxPackets
		}
	}
	return 0
}

// feed injects frame on port followed by an empty fence frame, and waits
// (bounded) until the port's reader has taken both: frames of one port
// are handled in order, so the fuzz frame has then gone all the way
// through the switch, router and NAT. Whatever the datapath wrote to any
// port is thrown away.
func (ft *fuzzTopo) feed(t *testing.T, port string, frame []byte) {
	before := ft.rx(port)
	ft.mems[port].Inject(frame)
	ft.mems[port].Inject(nil)
	deadline := time.Now().Add(2 * time.Second)
	for ft.rx(port) < before+2 {
		ft.drain()
		if time.Now().After(deadline) {
			t.Fatalf("port %s: frame not taken within 2s", port)
		}
		time.Sleep(50 * time.Microsecond)
	}
	ft.drain()
}

func (ft *fuzzTopo) drain() {
	for _, m := range ft.mems {
		for m.Pending() > 0 {
			m.Recv(0)
		}
	}
}

func tcpSyn(tb testing.TB, smac, dmac packet.MAC, src, dst string) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1, Window: 65535}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return ser(tb, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
}

func icmpEcho(tb testing.TB, smac, dmac packet.MAC, src, dst string) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	return ser(tb, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}, ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}, gopacket.Payload("ping"))
}

// FuzzDatapath injects arbitrary bytes as a frame from an endpoint and as
// a frame from the host on the uplink of a running datapath: whatever
// the input, nothing panics (a panic in a reader goroutine kills the
// process, which the fuzzer reports) and every frame is taken.
func FuzzDatapath(f *testing.F) {
	// Valid frames (ARP, UDP, TCP SYN, ICMP echo) seed the corpus from
	// testdata/fuzz/FuzzDatapath; this one adds a TTL 0 frame and an
	// empty one.
	web2MAC := mac4(netip.MustParseAddr("172.20.0.11"))
	f.Add(byte(1), udp(f, web2MAC, webMAC, "172.20.0.11", "172.20.0.10", 0), []byte{})
	ft := newFuzzTopo(f)
	f.Fuzz(func(t *testing.T, port byte, frame, up []byte) {
		ft.feed(t, fuzzPorts[int(port)%len(fuzzPorts)], frame)
		ft.feed(t, UplinkPort, up)
	})
}
