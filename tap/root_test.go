package tap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/nsthread"
	"github.com/uswitch-dev/uswitch/packet"
)

// These tests need root. Everything they create lives in anonymous network
// namespaces held only by this process, so nothing can leak into the host
// (the namespaces and their devices vanish when the test process exits,
// even on a crash) and no traffic reaches the root namespace.

// needRoot: root and /dev/net/tun, or the test fails naming what is
// missing (it skips only when USWITCH_SKIP_E2E opts out).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "/dev/net/tun")
}

// prefix is the unique prefix of every device the tests create.
var prefix = fmt.Sprintf("ustp%d", os.Getpid()%1000)

// newNetns creates an anonymous network namespace that lives until the
// test ends.
func newNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	err := nsthread.Switched(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() (err error) {
		h, err = netns.Get()
		return err
	})
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func handleAt(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// configure gives link a MAC and an address and brings it up.
func configure(t testing.TB, h *netlink.Handle, name string, mac net.HardwareAddr, cidr string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if mac != nil {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			t.Fatalf("link %s: set mac: %v", name, err)
		}
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("link %s: add %s: %v", name, cidr, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("link %s: up: %v", name, err)
	}
	return l
}

// reader reads a port in the background until it is closed.
type reader struct {
	frames chan []byte
	done   chan error
}

func startReader(p Port) *reader {
	r := &reader{frames: make(chan []byte, 256), done: make(chan error, 1)}
	go func() {
		b := make([]byte, MaxFrame)
		for {
			n, _, err := p.ReadFrame(b)
			if err != nil {
				r.done <- err
				return
			}
			select {
			case r.frames <- append([]byte(nil), b[:n]...):
			default:
			}
		}
	}()
	return r
}

// await returns the first frame for which match is true, sending the
// probe (if any) once a second until then.
func (r *reader) await(t *testing.T, p Port, probe []byte, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	send := func() {
		if probe != nil {
			if err := p.WriteFrame(probe, packet.Offload{}); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
	}
	send()
	for {
		select {
		case f := <-r.frames:
			if match(f) {
				return f
			}
		case <-tick.C:
			send()
		case <-deadline:
			t.Fatal("no matching frame within 5s")
		}
	}
}

var fakeMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}

// arpRequest builds a broadcast "who-has target tell sender" frame, tagged
// with vlan if vlan != 0.
func arpRequest(t *testing.T, vlan uint16, srcMAC net.HardwareAddr, src, target string) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: srcMAC, SourceProtAddress: net.ParseIP(src).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(target).To4(),
	}
	ls := []gopacket.SerializableLayer{eth, arp}
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = []gopacket.SerializableLayer{eth, &layers.Dot1Q{VLANIdentifier: vlan, Type: layers.EthernetTypeARP}, arp}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// isARPReply matches the reply from ip (with MAC mac) to the fake host, on
// vlan (0: untagged).
func isARPReply(vlan uint16, ip string, mac net.HardwareAddr) func([]byte) bool {
	return func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		q, tagged := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		if tagged != (vlan != 0) || (tagged && q.VLANIdentifier != vlan) {
			return false
		}
		a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		return ok && a.Operation == layers.ARPReply &&
			net.IP(a.SourceProtAddress).Equal(net.ParseIP(ip)) &&
			net.HardwareAddr(a.SourceHwAddress).String() == mac.String() &&
			net.HardwareAddr(a.DstHwAddress).String() == fakeMAC.String()
	}
}

// closeUnblocks checks that Close makes the blocked reader return ErrClosed
// promptly and that later writes fail with ErrClosed too.
func closeUnblocks(t *testing.T, p Port, r *reader) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("read after close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock ReadFrame")
	}
	if err := p.WriteFrame(make([]byte, 60), packet.Offload{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestTAPRoundTrip(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	h := handleAt(t, ns)
	name := prefix + "t"
	var tp *TAP
	if err := nsthread.In(ns, func() (err error) { tp, err = OpenTAP(name); return }); err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	if tp.Name() != name {
		t.Fatalf("name %q, want %q", tp.Name(), name)
	}
	mac := net.HardwareAddr{0x02, 0x42, 10, 99, 0, 2}
	configure(t, h, name, mac, "10.99.0.2/24")

	r := startReader(tp)
	r.await(t, tp, arpRequest(t, 0, fakeMAC, "10.99.0.99", "10.99.0.2"), isARPReply(0, "10.99.0.2", mac))
	closeUnblocks(t, tp, r)

	// A non-persistent TAP disappears with its descriptor.
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := h.LinkByName(name)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TAP %s still exists after Close (err %v)", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOpenTAPDuplicateName(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	name := prefix + "d"
	err := nsthread.In(ns, func() error {
		a, err := OpenTAP(name)
		if err != nil {
			return err
		}
		defer a.Close()
		// Opening the same name attaches to the existing device only if
		// it is a free multiqueue device; a single-queue TAP is busy.
		b, err := OpenTAP(name)
		if err == nil {
			b.Close()
			return errors.New("second OpenTAP of a busy TAP succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// vethInNetns makes a veth pair host/peer in ns, configures the peer and
// opens a Packet socket on the host end.
func vethInNetns(t *testing.T, ns netns.NsHandle, h *netlink.Handle, disable bool) (*Packet, string, net.HardwareAddr) {
	t.Helper()
	return vethWith(t, ns, h, disable, PacketOptions{})
}

// vethWith is vethInNetns with the packet socket opened with opt.
func vethWith(t testing.TB, ns netns.NsHandle, h *netlink.Handle, disable bool, opt PacketOptions) (*Packet, string, net.HardwareAddr) {
	t.Helper()
	host, peer := prefix+"h", prefix+"p"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	mac := net.HardwareAddr{0x02, 0x42, 10, 99, 1, 2}
	configure(t, h, peer, mac, "10.99.1.2/24")
	hl, err := h.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	if disable {
		if err := nsthread.In(ns, func() error { return DisableOffloads(peer) }); err != nil {
			t.Fatalf("DisableOffloads: %v", err)
		}
	}
	var pk *Packet
	if err := nsthread.In(ns, func() (err error) { pk, err = OpenPacketWith(host, hl.Attrs().Index, opt); return }); err != nil {
		t.Fatalf("OpenPacket: %v", err)
	}
	t.Cleanup(func() { pk.Close() })
	return pk, peer, mac
}

func TestPacketRoundTrip(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	h := handleAt(t, ns)
	pk, peer, mac := vethInNetns(t, ns, h, true)

	var off Offloads
	if err := nsthread.In(ns, func() (err error) { off, err = GetOffloads(peer); return }); err != nil {
		t.Fatalf("GetOffloads: %v", err)
	}
	if off != (Offloads{}) {
		t.Fatalf("offloads still on after DisableOffloads: %+v", off)
	}

	r := startReader(pk)
	r.await(t, pk, arpRequest(t, 0, fakeMAC, "10.99.1.99", "10.99.1.2"), isARPReply(0, "10.99.1.2", mac))

	// The kernel moves a VLAN tag out of the frame into metadata before
	// packet sockets see it; ReadFrame must put it back. Send tagged
	// frames from the namespace side with a second packet socket.
	sendTagged(t, ns, h, peer, func(frame []byte) {
		r.await(t, pk, nil, func(f []byte) bool { return bytes.Equal(f, frame) })
	})

	closeUnblocks(t, pk, r)
}

// sendTagged sends VLAN-tagged frames from the namespace side of the veth
// (peer) with a second packet socket, and calls await with each.
func sendTagged(t *testing.T, ns netns.NsHandle, h *netlink.Handle, peer string, await func(frame []byte)) {
	t.Helper()
	pl, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	var inner *Packet
	if err := nsthread.In(ns, func() (err error) { inner, err = OpenPacket(peer, pl.Attrs().Index, false, false); return }); err != nil {
		t.Fatalf("OpenPacket(peer): %v", err)
	}
	defer inner.Close()
	for _, vlan := range []uint16{100, 4094} {
		frame := arpRequest(t, vlan, fakeMAC, "10.99.2.99", "10.99.2.2")
		if err := inner.WriteFrame(frame, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		await(frame)
	}
}

// TestPacketChecksums sends UDP from inside the namespace and checks that
// the frames the host end reads are complete: valid IPv4 and UDP
// checksums, no frame above the MTU. With tx checksumming left on, the
// veth would hand over CHECKSUM_PARTIAL frames whose UDP checksum is only
// the pseudo-header sum.
func TestPacketChecksums(t *testing.T) {
	needRoot(t)
	for _, disable := range []bool{true, false} {
		t.Run(fmt.Sprintf("offloads-disabled=%v", disable), func(t *testing.T) {
			ns := newNetns(t)
			h := handleAt(t, ns)
			pk, peer, _ := vethInNetns(t, ns, h, disable)
			pl, _ := h.LinkByName(peer)
			if err := h.NeighAdd(&netlink.Neigh{
				LinkIndex: pl.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: net.ParseIP("10.99.1.99"), HardwareAddr: fakeMAC,
			}); err != nil {
				t.Fatalf("neigh: %v", err)
			}
			r := startReader(pk)
			err := nsthread.In(ns, func() error {
				c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP("10.99.1.99"), Port: 9999})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write(make([]byte, 1000))
				return err
			})
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			f := r.await(t, pk, nil, func(f []byte) bool {
				return len(f) > 34 && packet.Ethernet(f).EtherType() == packet.EtherTypeIPv4 && packet.IPv4(f[14:]).Protocol() == unix.IPPROTO_UDP
			})
			ok := udpChecksumOK(f[14:])
			if disable && !ok {
				t.Fatalf("UDP checksum invalid with offloads disabled")
			}
			if !disable {
				// Not an assertion on the kernel, just a record of why
				// DisableOffloads exists.
				t.Logf("offloads on: UDP checksum valid = %v", ok)
			}
		})
	}
}

// udpChecksumOK verifies the UDP checksum of the IPv4 packet ip by having
// gopacket compute it (a zero checksum means none).
func udpChecksumOK(ip []byte) bool {
	p := gopacket.NewPacket(ip, layers.LayerTypeIPv4, gopacket.Default)
	ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip4 == nil || u == nil {
		return false
	}
	if u.Checksum == 0 {
		return true // no checksum
	}
	c := *u
	_ = c.SetNetworkLayerForChecksum(ip4)
	if err := gopacket.SerializeLayers(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(u.Payload)); err != nil {
		return false
	}
	return c.Checksum == u.Checksum
}

// TestVnetTAPOffloads: the kernel hands a vnet_hdr TAP partial checksums
// and TCP super-frames with their virtio-net headers, which software
// segmentation turns into valid wire frames; reads and writes allocate
// nothing. The same with the descriptor in the Go netpoller and polled.
func TestVnetTAPOffloads(t *testing.T) { bothModes(t, testVnetTAPOffloads) }

// bothModes runs test (a root test) with a port's descriptor in the Go
// netpoller and polled.
func bothModes(t *testing.T, test func(t *testing.T, polled bool)) {
	needRoot(t)
	for _, polled := range []bool{false, true} {
		t.Run(fmt.Sprintf("polled=%t", polled), func(t *testing.T) { test(t, polled) })
	}
}

func testVnetTAPOffloads(t *testing.T, polled bool) {
	ns := newNetns(t)
	h := handleAt(t, ns)
	name := prefix + "v"
	var tp *VnetTAP
	if err := nsthread.In(ns, func() (err error) { tp, err = OpenVnetTAP(name, polled); return }); err != nil {
		t.Fatalf("OpenVnetTAP: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	mac := net.HardwareAddr{0x02, 0x42, 10, 98, 0, 2}
	// No IPv6 on the TAP: its DAD, MLD and router solicitations would
	// come at any time, where the test wants nothing but its replies.
	if err := nsthread.In(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	}); err != nil {
		t.Fatalf("disable IPv6 on %s: %v", name, err)
	}
	l := configure(t, h, name, mac, "10.98.0.2/24")
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("10.98.0.99"), HardwareAddr: fakeMAC}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}

	// Writes and reads allocate nothing: an ARP request in, its reply out.
	probe := arpRequest(t, 0, fakeMAC, "10.98.0.99", "10.98.0.2")
	b := make([]byte, MaxFrame)
	allocs := testing.AllocsPerRun(50, func() {
		if err := tp.WriteFrame(probe, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tp.ReadFrame(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read", allocs)
	}
	if polled {
		// Nothing waits: a polled read says so at once, without allocating.
		allocs := testing.AllocsPerRun(50, func() {
			if _, _, ok, err := tp.TryReadFrame(b); ok || err != nil {
				t.Fatalf("TryReadFrame with nothing waiting: ok %v, err %v", ok, err)
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per empty TryReadFrame", allocs)
		}
		// The reply to a probe is there to be taken.
		if err := tp.WriteFrame(probe, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			n, _, ok, err := tp.TryReadFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if n < 42 || packet.Ethernet(b).EtherType() != packet.EtherTypeARP {
					t.Fatalf("TryReadFrame: %d bytes, not the ARP reply", n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no ARP reply to TryReadFrame")
			}
			time.Sleep(time.Millisecond)
		}
	}

	awaitSuperFrame(t, ns, tp, mac, "10.98.0.99", "10.98.0.2", tp.ReadFrame)
}

// awaitSuperFrame opens a TCP connection from ns to the fake peer peerIP,
// whose side the test plays on port p (the namespace's address ip, MAC
// mac), reading with read: the kernel's segments come with partial
// checksums, and once the handshake is done its data as super-frames,
// which must segment into valid wire frames.
func awaitSuperFrame(t *testing.T, ns netns.NsHandle, p Port, mac net.HardwareAddr, peerIP, ip string, read func([]byte) (int, packet.Offload, error)) {
	t.Helper()
	b := make([]byte, MaxFrame)
	data := make([]byte, 200<<10)
	go nsthread.In(ns, func() error {
		c, err := net.DialTimeout("tcp4", peerIP+":80", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write(data)
		return err
	})
	next := func() ([]byte, packet.Offload) {
		for {
			n, off, err := read(b)
			if err != nil {
				t.Fatal(err)
			}
			pk := gopacket.NewPacket(b[:n], layers.LayerTypeEthernet, gopacket.NoCopy)
			if pk.Layer(layers.LayerTypeTCP) != nil {
				return b[:n], off
			}
		}
	}
	syn, off := next()
	if !off.NeedsCsum() || off.CsumStart != 34 || off.CsumOffset != 16 {
		t.Fatalf("SYN offloads %+v, want a partial TCP checksum", off)
	}
	requireWireFrames(t, syn, off, 1)
	s := gopacket.NewPacket(syn, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(peerIP).To4(), DstIP: net.ParseIP(ip).To4()}
	synAck := &layers.TCP{SrcPort: 80, DstPort: s.SrcPort, Seq: 5000, Ack: s.Seq + 1, SYN: true, ACK: true, Window: 65535,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}
	_ = synAck.SetNetworkLayerForChecksum(ip4)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: fakeMAC, DstMAC: mac, EthernetType: layers.EthernetTypeIPv4}, ip4, synAck); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFrame(buf.Bytes(), packet.Offload{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f, off := next()
		if off.IsGSO() {
			if off.Type() != packet.GSOTCPv4 || off.GSOSize != 1460 {
				t.Fatalf("super-frame offloads %+v", off)
			}
			requireWireFrames(t, f, off, (len(f)-54+1459)/1460)
			return
		}
	}
	t.Fatal("no super-frame from the namespace's TCP")
}

// requireWireFrames segments a frame with offloads and requires n wire
// frames with valid IPv4 and TCP checksums.
func requireWireFrames(t *testing.T, f []byte, off packet.Offload, n int) {
	t.Helper()
	got := 0
	err := gso.Segment(f, off, make([]byte, MaxFrame), func(w []byte) error {
		got++
		ip := packet.IPv4(w[packet.EthernetHeaderLen:])
		if !ip.HeaderChecksumValid() {
			return errors.New("bad IPv4 header checksum")
		}
		if packet.Checksum(ip.Payload(), packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoTCP, uint16(len(ip.Payload())))) != 0 {
			return errors.New("bad TCP checksum")
		}
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("segmenting %d bytes with %+v: %d frames, %v; want %d valid ones", len(f), off, got, err, n)
	}
}

// TestPolledCloseUnblocksRead: Close ends a polled descriptor's waiting
// ReadFrame (which sleeps in poll(2)) with ErrClosed, and later calls fail
// with it too.
func TestPolledCloseUnblocksRead(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	var tp *VnetTAP
	if err := nsthread.In(ns, func() (err error) { tp, err = OpenVnetTAP(prefix+"c", true); return }); err != nil {
		t.Fatalf("OpenVnetTAP: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := tp.ReadFrame(make([]byte, MaxFrame))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadFrame after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadFrame still waiting 2 s after Close")
	}
	if _, _, _, err := tp.TryReadFrame(make([]byte, 64)); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryReadFrame after Close: %v, want ErrClosed", err)
	}
	if err := tp.WriteFrame(make([]byte, 60), packet.Offload{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteFrame after Close: %v, want ErrClosed", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestVnetTAPQueuesSteer: a multi-queue TAP has a descriptor per queue,
// and the kernel hands a flow's frames to the queue that last wrote that
// flow in: an echo request written on queue q (Offload.Queue) is answered
// on queue q, and the answers move when the writing queue does.
func TestVnetTAPQueuesSteer(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	name := prefix + "q"
	var tp *VnetTAP
	if err := nsthread.In(ns, func() (err error) { tp, err = OpenVnetTAPQueues(name, true, 2); return }); err != nil {
		t.Fatalf("OpenVnetTAPQueues: %v", err)
	}
	defer tp.Close()
	qs := tp.Queues()
	if len(qs) != 2 {
		t.Fatalf("%d queues, want 2", len(qs))
	}
	if !tapMultiQueue(t, qs[1]) {
		t.Fatal("queue 1 not IFF_MULTI_QUEUE")
	}
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	h := handleAt(t, ns)
	l := configure(t, h, name, mac, "10.231.0.1/24")
	// The fake host's address is known: no ARP (which is not steered as
	// a flow) before the answers.
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.231.0.2"), HardwareAddr: fakeMAC}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	rs := []*reader{startReader(qs[0]), startReader(qs[1])}
	eth := &layers.Ethernet{SrcMAC: fakeMAC, DstMAC: mac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP("10.231.0.2").To4(), DstIP: net.ParseIP("10.231.0.1").To4()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp, gopacket.Payload("steer")); err != nil {
		t.Fatal(err)
	}
	req := sb.Bytes()
	isReply := func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		e, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && e.TypeCode.Type() == layers.ICMPv4TypeEchoReply && e.Id == 7
	}
	// The kernel answers within the write, before it records the queue
	// the flow came from: the first answer after a change of queue still
	// goes the old way, the next ones the new.
	reply := func(q uint8) int {
		if err := tp.WriteFrame(req, packet.Offload{Queue: q}); err != nil {
			t.Fatalf("write on queue %d: %v", q, err)
		}
		deadline := time.After(5 * time.Second)
		for {
			select {
			case f := <-rs[0].frames:
				if isReply(f) {
					return 0
				}
			case f := <-rs[1].frames:
				if isReply(f) {
					return 1
				}
			case <-deadline:
				t.Fatalf("no echo reply within 5 s (written on queue %d)", q)
			}
		}
	}
	for _, q := range []uint8{1, 0, 1, 0} {
		reply(q)
		for range 3 {
			if got := reply(q); got != int(q) {
				t.Fatalf("echo reply on queue %d, request written on %d", got, q)
			}
		}
	}
}

// tapMultiQueue reports whether the TAP behind p was made with
// IFF_MULTI_QUEUE.
func tapMultiQueue(t *testing.T, p Polled) bool {
	t.Helper()
	ifr, err := unix.NewIfreq("")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(p.Fd(), unix.TUNGETIFF, ifr); err != nil {
		t.Fatalf("TUNGETIFF: %v", err)
	}
	return ifr.Uint16()&unix.IFF_MULTI_QUEUE != 0
}

// TestVnetTAPQueuesReattach: a persistent TAP is attached again as it was
// made: one left single-queue (by an older run) gets one queue when more
// are asked for, and a multi-queue one stays multi-queue with one.
func TestVnetTAPQueuesReattach(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	for _, c := range []struct {
		made, asked, want int
		multi             bool
	}{{1, 2, 1, false}, {2, 1, 1, true}, {2, 3, 3, true}} {
		name := fmt.Sprintf("%sr%d%d", prefix, c.made, c.asked)
		err := nsthread.In(ns, func() error {
			tp, err := OpenVnetTAPQueues(name, true, c.made)
			if err != nil {
				return err
			}
			if err := tp.SetPersist(true); err != nil {
				return err
			}
			if err := tp.Close(); err != nil {
				return err
			}
			if tp, err = OpenVnetTAPQueues(name, true, c.asked); err != nil {
				return fmt.Errorf("reattach: %w", err)
			}
			defer tp.Close()
			if got := len(tp.Queues()); got != c.want {
				return fmt.Errorf("%d queues, want %d", got, c.want)
			}
			if tapMultiQueue(t, tp.Queues()[0]) != c.multi {
				return fmt.Errorf("multi-queue %v, want %v", !c.multi, c.multi)
			}
			// The device works: a frame written goes in.
			if err := handleAt(t, ns).LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
				return err
			}
			if err := tp.WriteFrame(arpRequest(t, 0, fakeMAC, "10.0.0.2", "10.0.0.1"), packet.Offload{Queue: uint8(c.asked - 1)}); err != nil {
				return err
			}
			return tp.SetPersist(false)
		})
		if err != nil {
			t.Fatalf("made with %d queues, attached with %d: %v", c.made, c.asked, err)
		}
	}
}

// TestPacketQueuesFanout: a veth's host end opened with two queues is two
// packet sockets in a PACKET_FANOUT_HASH group: every frame the namespace
// sends is read once, all the frames of a flow by the same socket, and
// different flows by both.
func TestPacketQueuesFanout(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	h := handleAt(t, ns)
	single, peer, _ := vethWith(t, ns, h, true, PacketOptions{Polled: true})
	single.Close() // not in the group: it would read every frame too
	host := prefix + "h"
	hl, err := h.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	var port Port
	if err := nsthread.In(ns, func() (err error) {
		port, err = OpenPacketQueues(host, hl.Attrs().Index, PacketOptions{Polled: true}, 2)
		return
	}); err != nil {
		t.Fatalf("OpenPacketQueues: %v", err)
	}
	defer port.Close()
	mq, ok := port.(*PacketQueues)
	if !ok || len(mq.Queues()) != 2 {
		t.Fatalf("%T, want *PacketQueues with 2 queues", port)
	}
	pl, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.99.1.9"), HardwareAddr: fakeMAC}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	const flows, each = 32, 5
	err = nsthread.In(ns, func() error {
		for i := range flows {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.99.1.2"), Port: 41000 + i}, &net.UDPAddr{IP: net.ParseIP("10.99.1.9"), Port: 9})
			if err != nil {
				return err
			}
			for range each {
				if _, err := c.Write([]byte("fanout")); err != nil {
					c.Close()
					return err
				}
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	// Which socket read each flow's datagrams.
	queueOf := map[uint16]map[int]int{}
	got := 0
	buf := make([]byte, MaxFrame)
	deadline := time.Now().Add(5 * time.Second)
	for got < flows*each && time.Now().Before(deadline) {
		for i, q := range mq.Queues() {
			n, _, ok, err := q.TryReadFrame(buf)
			if err != nil {
				t.Fatalf("queue %d: %v", i, err)
			}
			if !ok {
				continue
			}
			p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
			u, isUDP := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !isUDP || u.DstPort != 9 {
				continue
			}
			if queueOf[uint16(u.SrcPort)] == nil {
				queueOf[uint16(u.SrcPort)] = map[int]int{}
			}
			queueOf[uint16(u.SrcPort)][i]++
			got++
		}
	}
	if got != flows*each {
		t.Fatalf("read %d datagrams, want %d", got, flows*each)
	}
	used := map[int]bool{}
	for sport, qs := range queueOf {
		if len(qs) != 1 {
			t.Fatalf("flow from port %d read by sockets %v", sport, qs)
		}
		for q := range qs {
			used[q] = true
		}
	}
	if len(used) != 2 {
		t.Fatalf("%d flows all read by one socket", flows)
	}
}
