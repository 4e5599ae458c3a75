package datapath

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/tap"
)

// fuzzPorts are the endpoint ports of testPlan an input can be injected on.
var fuzzPorts = []string{"web", "web2", "db"}

// fuzzTopo is a running datapath of testPlan (web2 without port security,
// so the unchecked path is reached too) with in-memory ports, kept across
// fuzz inputs so later inputs meet the FDB, ARP and connection state of
// earlier ones.
type fuzzTopo struct {
	dp     *Datapath
	mems   map[string]*tap.Mem
	errors *errorCounter
}

// errorCounter is a log handler that counts error records: a frame whose
// handling panicked is logged at error level (and dropped), which a fuzz
// input must never cause.
type errorCounter struct {
	slog.Handler
	n atomic.Int64
}

func (e *errorCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.n.Add(1)
	}
	return nil
}

func newFuzzTopo(tb testing.TB) *fuzzTopo {
	plan := testPlan(false)
	plan.Endpoints[1].PortSecurity = false
	errs := &errorCounter{Handler: slog.DiscardHandler}
	dp, err := New(plan, &clock.Fake{}, slog.New(errs))
	if err != nil {
		tb.Fatal(err)
	}
	ft := &fuzzTopo{dp: dp, mems: map[string]*tap.Mem{}, errors: errs}
	for _, p := range fuzzPorts {
		m := tap.NewMem(64)
		if p == "web" { // a port with offloads: super-frames reach it whole
			m = tap.NewMemOffload(64)
		}
		ft.mems[p] = m
		if err := dp.AttachEndpoint(p, m); err != nil {
			tb.Fatal(err)
		}
	}
	ft.mems[rule.Uplink] = tap.NewMem(64)
	if err := dp.AttachUplink(ft.mems[rule.Uplink]); err != nil {
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
func (ft *fuzzTopo) feed(t *testing.T, port string, frame []byte, off packet.Offload) {
	before := ft.rx(port)
	ft.mems[port].InjectOffload(frame, off)
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
	if n := ft.errors.n.Load(); n > 0 {
		t.Fatalf("%d frames made the datapath log an error (a panic)", n)
	}
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
		ft.feed(t, fuzzPorts[int(port)%len(fuzzPorts)], frame, packet.Offload{})
		ft.feed(t, rule.Uplink, up, packet.Offload{})
	})
}

// FuzzDatapathOffload injects arbitrary frames with arbitrary virtio-net
// headers (as a vnet_hdr TAP reads them) through switch, router and NAT to
// ports with and without offloads: whatever the header says, nothing
// panics and every frame is taken.
func FuzzDatapathOffload(f *testing.F) {
	// Small seeds: the fuzzer minimises every new input, which takes long
	// for big ones.
	super, off := superTCP(f, webMAC, frontG, "172.20.0.10", "172.21.0.20", 40000, 80, 300)
	off.GSOSize = 100
	f.Add(byte(0), super, off.Flags, off.GSOType, off.HdrLen, off.GSOSize, off.CsumStart, off.CsumOffset)
	f.Add(byte(0), super[:120], uint8(packet.VnetNeedsCsum), uint8(0), uint16(0), uint16(0), uint16(34), uint16(16))
	f.Add(byte(1), super, off.Flags, uint8(packet.GSOUDPL4), off.HdrLen, uint16(1), off.CsumStart, uint16(6))
	ft := newFuzzTopo(f)
	f.Fuzz(func(t *testing.T, port byte, frame []byte, flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) {
		o := packet.Offload{Flags: flags, GSOType: gsoType, HdrLen: hdrLen, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		ft.feed(t, fuzzPorts[int(port)%len(fuzzPorts)], frame, o)
		ft.feed(t, rule.Uplink, frame, o)
	})
}
