package datapath

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// offloadPlan is testPlan with a third endpoint on front; back is open.
func offloadPlan() *config.Plan {
	p := testPlan(false)
	p.Endpoints = append(p.Endpoints, config.Endpoint{Name: "web3", Mode: "bridge", PortSecurity: true,
		Interfaces: []config.Interface{iface("web3", "front", "172.20.0.12", 24)}})
	return p
}

// startOffload wires plan with a port with offloads (a vnet_hdr TAP) for
// the names in withOffload and a plain one for the rest.
func startOffload(t *testing.T, plan *config.Plan, withOffload ...string) *topo {
	t.Helper()
	dp, err := New(plan, &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tp := &topo{dp: dp, mems: map[string]*tap.Mem{}}
	mem := func(name string) *tap.Mem {
		for _, n := range withOffload {
			if n == name {
				return tap.NewMemOffload(256)
			}
		}
		return tap.NewMem(256)
	}
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			tp.mems[ifc.Port] = mem(ifc.Port)
			require.NoError(t, dp.AttachEndpoint(ifc.Port, tp.mems[ifc.Port]))
		}
	}
	tp.mems["uplink"] = mem("uplink")
	require.NoError(t, dp.AttachUplink(tp.mems["uplink"]))
	t.Cleanup(func() { dp.Close() })
	return tp
}

const mss = 1448

// superTCP builds a TCP super-frame as a namespace's kernel hands it to a
// vnet_hdr TAP: one IPv4 packet with n payload bytes (DF set), its TCP
// checksum partial (the pseudo header's sum, not complemented), and the
// offload that says so.
func superTCP(t testing.TB, smac, dmac packet.MAC, src, dst string, sport, dport uint16, n int) ([]byte, packet.Offload) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 7, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 5, ACK: true, PSH: true, Window: 500,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	f := ser(t, &layers.Ethernet{SrcMAC: hw(smac), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload))
	l4 := f[packet.EthernetHeaderLen+packet.IPv4MinHeaderLen:]
	sum := packet.PseudoHeaderSum([4]byte(ip.SrcIP.To4()), [4]byte(ip.DstIP.To4()), packet.ProtoTCP, uint16(len(l4)))
	packet.TCP(l4).SetChecksum(^packet.Checksum(nil, sum))
	hdr := packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + 32
	return f, packet.Offload{Flags: packet.VnetNeedsCsum, GSOType: packet.GSOTCPv4, HdrLen: uint16(hdr), GSOSize: mss,
		CsumStart: packet.EthernetHeaderLen + packet.IPv4MinHeaderLen, CsumOffset: 16}
}

// onWire returns the wire frames a frame with offloads stands for, each
// checked: valid IPv4 header and TCP checksums, at most the MTU. The frame's
// partial checksum must be what the kernel that segments it expects: the
// sum of its own pseudo header.
func onWire(t *testing.T, f []byte, off packet.Offload) [][]byte {
	t.Helper()
	require.True(t, off.NeedsCsum())
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	l4 := f[off.CsumStart:]
	want := ^packet.Checksum(nil, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), ip.Protocol(), uint16(len(l4))))
	got := packet.UDP(l4).Checksum()
	if ip.Protocol() == packet.ProtoTCP {
		got = packet.TCP(l4).Checksum()
	}
	require.Equal(t, want, got, "partial checksum")
	var out [][]byte
	require.NoError(t, gso.Segment(f, off, make([]byte, tap.MaxFrame), func(s []byte) error {
		out = append(out, append([]byte(nil), s...))
		return nil
	}))
	for _, s := range out {
		requireWireValid(t, s)
	}
	return out
}

// requireWireValid checks a wire frame: MTU-sized, with valid IPv4 and TCP
// checksums.
func requireWireValid(t *testing.T, f []byte) {
	t.Helper()
	require.LessOrEqual(t, len(f), packet.EthernetHeaderLen+1500)
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	require.True(t, ip.Valid())
	require.True(t, ip.HeaderChecksumValid(), "IPv4 header checksum")
	l4 := ip.Payload()
	require.Zero(t, packet.Checksum(l4, packet.PseudoHeaderSum(ip.Src(), ip.Dst(), ip.Protocol(), uint16(len(l4)))), "TCP checksum")
}

// payloadOf concatenates the TCP payloads of wire frames.
func payloadOf(t *testing.T, frames [][]byte) []byte {
	var b []byte
	for _, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		require.NotNil(t, p.Layer(layers.LayerTypeTCP))
		b = append(b, p.Layer(layers.LayerTypeTCP).LayerPayload()...)
	}
	return b
}

var (
	web2MAC = mac4(netip.MustParseAddr("172.20.0.11"))
	web3MAC = mac4(netip.MustParseAddr("172.20.0.12"))
)

// A super-frame crosses the switch whole to a port with offloads, and as
// MTU-sized segments with complete checksums to a port without; the same
// for a flood.
func TestSuperFrameSwitched(t *testing.T) {
	tp := startOffload(t, offloadPlan(), "web", "web3")
	// teach the switch where web2 and web3 are
	tp.mems["web2"].Inject(arpRequest(t, web2MAC, "172.20.0.11", "172.20.0.1"))
	tp.mems["web3"].Inject(arpRequest(t, web3MAC, "172.20.0.12", "172.20.0.1"))
	require.NotNil(t, tp.mems["web2"].Recv(time.Second)) // web3's request, flooded
	require.NotNil(t, tp.mems["web2"].Recv(time.Second)) // the gateway's reply to web2
	for tp.mems["web3"].Recv(100*time.Millisecond) != nil {
	}
	for tp.mems["web"].Recv(100*time.Millisecond) != nil {
	}

	f, off := superTCP(t, webMAC, web3MAC, "172.20.0.10", "172.20.0.12", 40000, 80, 20000)
	tp.mems["web"].InjectOffload(f, off)
	got, gotOff := tp.mems["web3"].RecvOffload(time.Second)
	require.Equal(t, f, got, "forwarded whole and unchanged")
	require.Equal(t, off, gotOff)
	require.Nil(t, tp.mems["web2"].Recv(50*time.Millisecond), "known unicast reaches web3 alone")

	f, off = superTCP(t, webMAC, web2MAC, "172.20.0.10", "172.20.0.11", 40000, 80, 20000)
	tp.mems["web"].InjectOffload(f, off)
	var segs [][]byte
	for range 14 { // ceil(20000 / 1448)
		s := tp.mems["web2"].Recv(time.Second)
		require.NotNil(t, s)
		requireWireValid(t, s)
		segs = append(segs, s)
	}
	require.Nil(t, tp.mems["web2"].Recv(50*time.Millisecond))
	require.Equal(t, f[66:], payloadOf(t, segs))

	// unknown destination: flooded, whole to web3, segmented to web2
	f, off = superTCP(t, webMAC, packet.MAC{0x02, 0x42, 9, 9, 9, 9}, "172.20.0.10", "172.20.0.99", 40000, 80, 3000)
	tp.mems["web"].InjectOffload(f, off)
	got, gotOff = tp.mems["web3"].RecvOffload(time.Second)
	require.Equal(t, f, got)
	require.Equal(t, off, gotOff)
	require.Len(t, append(append([][]byte{}, tp.mems["web2"].Recv(time.Second)), tp.mems["web2"].Recv(time.Second), tp.mems["web2"].Recv(time.Second)), 3)
	require.Nil(t, tp.mems["web2"].Recv(50*time.Millisecond))
}

// resolveUplinkHost has the router learn the host side of the uplink.
func resolveUplinkHost(t *testing.T, tp *topo, hostMAC packet.MAC) {
	t.Helper()
	tp.resolveGateway(t, "uplink", hostMAC, "10.250.0.1", "10.250.0.2")
}

// A super-frame is routed and masqueraded whole: one TTL decrement, the
// source translated, only the pseudo-header part of its partial checksum
// adjusted; its segments then carry valid checksums, whether the uplink
// takes it whole or segments it. The reply is translated back the same way.
func TestSuperFrameMasqueraded(t *testing.T) {
	hostMAC := packet.MAC{0x02, 0xaa, 0, 0, 0, 1}
	upMAC := mac4(netip.MustParseAddr("10.250.0.2"))
	for _, uplinkOffload := range []bool{true, false} {
		name := "uplink without offloads"
		ports := []string{"web"}
		if uplinkOffload {
			name = "uplink with offloads"
			ports = append(ports, "uplink")
		}
		t.Run(name, func(t *testing.T) {
			tp := startOffload(t, offloadPlan(), ports...)
			resolveUplinkHost(t, tp, hostMAC)
			tp.resolveGateway(t, "web", webMAC, "172.20.0.10", "172.20.0.1")
			for tp.mems["web2"].Recv(50*time.Millisecond) != nil {
			}

			f, off := superTCP(t, webMAC, frontG, "172.20.0.10", "10.250.0.1", 40000, 443, 10000)
			tp.mems["web"].InjectOffload(f, off)
			var wire [][]byte
			if uplinkOffload {
				got, gotOff := tp.mems["uplink"].RecvOffload(time.Second)
				require.NotNil(t, got)
				require.Equal(t, off, gotOff, "the offloads travel with the frame")
				require.Len(t, got, len(f), "not segmented")
				wire = onWire(t, got, gotOff)
			} else {
				for range 7 { // ceil(10000 / 1448)
					s := tp.mems["uplink"].Recv(time.Second)
					require.NotNil(t, s)
					requireWireValid(t, s)
					wire = append(wire, s)
				}
			}
			require.Len(t, wire, 7)
			require.Equal(t, f[66:], payloadOf(t, wire))
			p := gopacket.NewPacket(wire[0], layers.LayerTypeEthernet, gopacket.Default)
			ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			require.Equal(t, "10.250.0.2", ip.SrcIP.String(), "masqueraded")
			require.EqualValues(t, 63, ip.TTL)
			require.Equal(t, hw(upMAC), p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC)
			sport := uint16(p.Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort)

			// the reply, a super-frame from the host, reaches web translated
			r, roff := superTCP(t, hostMAC, upMAC, "10.250.0.1", "10.250.0.2", 443, sport, 5000)
			tp.mems["uplink"].InjectOffload(r, roff)
			got, gotOff := tp.mems["web"].RecvOffload(time.Second)
			require.NotNil(t, got)
			require.True(t, gotOff.IsGSO())
			back := onWire(t, got, gotOff)
			require.Len(t, back, 4)
			require.Equal(t, r[66:], payloadOf(t, back))
			q := gopacket.NewPacket(back[0], layers.LayerTypeEthernet, gopacket.Default)
			require.Equal(t, "172.20.0.10", q.Layer(layers.LayerTypeIPv4).(*layers.IPv4).DstIP.String())
			require.EqualValues(t, 40000, q.Layer(layers.LayerTypeTCP).(*layers.TCP).DstPort)
		})
	}
}

// A small segment with a partial checksum (what every TCP segment from a
// namespace with checksum offload is) is masqueraded with only the pseudo
// header part of its checksum adjusted, and completed where it leaves on a
// port without offloads.
func TestPartialChecksumMasqueraded(t *testing.T) {
	hostMAC := packet.MAC{0x02, 0xaa, 0, 0, 0, 1}
	tp := startOffload(t, offloadPlan(), "web")
	resolveUplinkHost(t, tp, hostMAC)
	tp.resolveGateway(t, "web", webMAC, "172.20.0.10", "172.20.0.1")
	f, off := superTCP(t, webMAC, frontG, "172.20.0.10", "10.250.0.1", 40001, 443, 500)
	off.GSOType, off.GSOSize = packet.GSONone, 0
	tp.mems["web"].InjectOffload(f, off)
	got := tp.mems["uplink"].Recv(time.Second)
	require.NotNil(t, got)
	requireWireValid(t, got)
	require.Equal(t, "10.250.0.2", netip.AddrFrom4(packet.IPv4(got[packet.EthernetHeaderLen:]).Src()).String())
	require.Equal(t, f[66:], got[66:])
}

// A super-frame whose segments do not fit the egress MTU, with DF, gets
// "fragmentation needed" quoting its first segment as a wire would have
// carried it; one that fits a smaller MTU after segmentation is sent.
func TestSuperFrameMTU(t *testing.T) {
	plan := offloadPlan()
	plan.Networks[1].MTU = 1400
	plan.Endpoints[2].Interfaces[0].MTU = 1400
	tp := startOffload(t, plan, "web", "db")
	tp.resolveGateway(t, "web", webMAC, "172.20.0.10", "172.20.0.1")
	tp.mems["db"].Inject(arpRequest(t, dbMAC, "172.21.0.20", "172.21.0.1"))
	require.NotNil(t, tp.mems["db"].Recv(time.Second))
	for tp.mems["web2"].Recv(50*time.Millisecond) != nil {
	}

	f, off := superTCP(t, webMAC, frontG, "172.20.0.10", "172.21.0.20", 40000, 80, 10000)
	tp.mems["web"].InjectOffload(f, off)
	got, gotOff := tp.mems["web"].RecvOffload(time.Second)
	require.NotNil(t, got)
	require.True(t, gotOff.Plain())
	p := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default)
	icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.EqualValues(t, layers.ICMPv4TypeDestinationUnreachable, icmp.TypeCode.Type())
	require.EqualValues(t, layers.ICMPv4CodeFragmentationNeeded, icmp.TypeCode.Code())
	quoted := packet.IPv4(icmp.Payload)
	require.EqualValues(t, 20+32+mss, quoted.TotalLen(), "the first segment's length, not the super-frame's")
	require.True(t, quoted.HeaderChecksumValid())
	require.Nil(t, tp.mems["db"].Recv(50*time.Millisecond))

	// segments of 1300 bytes fit: forwarded whole
	off.GSOSize = 1300
	tp.mems["web"].InjectOffload(f, off)
	got, gotOff = tp.mems["db"].RecvOffload(time.Second)
	require.NotNil(t, got)
	require.Equal(t, off, gotOff)
	require.True(t, bytes.Equal(f[66:], got[66:]))
}
