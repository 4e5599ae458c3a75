package topo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// These tests need root. Every namespace, link and file they make is named
// after a per-process prefix ("usto<pid%1000>") and removed in t.Cleanup,
// also when a test fails. Frames are only sent into the test's own
// namespaces.

// needRoot: root, /dev/net/tun and ip(8), or the test fails naming what
// is missing (it skips only when USWITCH_SKIP_E2E opts out).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "/dev/net/tun", "ip")
}

var testPrefix = fmt.Sprintf("usto%d", os.Getpid()%1000)

// testPlanShape is a plan on net.0/24 (net like "10.213.0") with a TAP
// endpoint, a container endpoint listed before its (veth) target, the veth
// endpoint, a none endpoint and a host endpoint.
func testPlanShape(name, net string) *config.Plan {
	gw := netip.MustParseAddr(net + ".1")
	iface := func(ep string, host byte) config.Interface {
		ip := netip.MustParseAddr(fmt.Sprintf("%s.%d", net, host))
		b := ip.As4()
		return config.Interface{
			Name: "eth0", Port: ep, Network: "front", IP: ip,
			Prefix: netip.PrefixFrom(ip, 24), Gateway: gw, MTU: 1400,
			MAC: packet.MAC{0x02, 0x42, b[0], b[1], b[2], b[3]},
		}
	}
	a, b, c, n, h := name+"a", name+"b", name+"c", name+"n", name+"h"
	return &config.Plan{
		Name: name,
		Networks: []config.Network{{
			Name: "front", Subnet: netip.MustParsePrefix(net + ".0/24"), Gateway: gw, MTU: 1400,
		}},
		Endpoints: []config.Endpoint{
			{Name: a, Netns: a, Mode: config.ModeBridge, Link: config.LinkTAP, Interfaces: []config.Interface{iface(a, 10)}},
			{Name: c, Netns: b, Mode: config.ModeContainer, Container: b},
			{Name: b, Netns: b, Mode: config.ModeBridge, Link: config.LinkVeth, Aliases: []string{"bee"}, Interfaces: []config.Interface{iface(b, 11)}},
			{Name: n, Netns: n, Mode: config.ModeNone},
			{Name: h, Mode: config.ModeHost},
		},
	}
}

// setup returns a fresh plan and options and makes sure that whatever the
// test does, nothing named after the plan survives it.
func setup(t *testing.T, suffix string) (*config.Plan, Options) {
	t.Helper()
	needRoot(t)
	p := testPlanShape(testPrefix+suffix, "10.213.0")
	opt := Options{StateDir: t.TempDir()}
	etcExisted, runExisted := exists(etcNetnsDir), exists(netnsDir)
	t.Cleanup(func() {
		if err := Down(p.Name, opt); err != nil {
			t.Errorf("cleanup: Down: %v", err)
		}
		for _, ep := range p.Endpoints {
			if namespaced(ep.Mode) {
				deleteNetns(ep.Netns)
				os.RemoveAll(etcNetnsDir + "/" + ep.Netns)
			}
			for _, ifc := range ep.Interfaces {
				deleteLink(LinkRef{Name: HostLinkName(p.Name, ifc.Port)})
			}
		}
		if !etcExisted {
			os.Remove(etcNetnsDir) // only if empty
		}
		if !runExisted {
			os.Remove(netnsDir)
		}
	})
	return p, opt
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func ipNetnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func inList(list, name string) bool {
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// assertApplied checks the namespaces from the inside.
func assertApplied(t *testing.T, p *config.Plan, topo *Topology) {
	t.Helper()
	list := ipNetnsList(t)
	for _, ep := range p.Endpoints {
		if !namespaced(ep.Mode) {
			continue
		}
		if !exists(netnsPath(ep.Netns)) {
			t.Fatalf("netns %s: no %s", ep.Netns, netnsPath(ep.Netns))
		}
		if list != "" && !inList(list, ep.Netns) {
			t.Fatalf("ip netns list does not show %s:\n%s", ep.Netns, list)
		}
		ns, err := openNetns(ep.Netns)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			ns.Close()
			t.Fatal(err)
		}
		func() {
			defer ns.Close()
			defer h.Close()
			links, err := retryDump(func() ([]netlink.Link, error) { return h.LinkList() })
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]netlink.Link{}
			for _, l := range links {
				byName[l.Attrs().Name] = l
			}
			if lo := byName["lo"]; lo == nil || lo.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("netns %s: lo not up", ep.Netns)
			}
			if ep.Mode == config.ModeNone {
				if len(links) != 1 {
					t.Errorf("netns %s (none): links %v, want lo only", ep.Netns, byName)
				}
				return
			}
			ifc := ep.Interfaces[0]
			l := byName["eth0"]
			if l == nil {
				t.Fatalf("netns %s: no eth0 (links %v)", ep.Netns, byName)
			}
			a := l.Attrs()
			if a.Flags&net.FlagUp == 0 || a.MTU != ifc.MTU || a.HardwareAddr.String() != ifc.MAC.String() {
				t.Errorf("netns %s: eth0 flags %v mtu %d mac %s, want up, %d, %s", ep.Netns, a.Flags, a.MTU, a.HardwareAddr, ifc.MTU, ifc.MAC)
			}
			wantKind := map[string]string{config.LinkTAP: "tuntap", config.LinkVeth: "veth"}[ep.Link]
			if l.Type() != wantKind {
				t.Errorf("netns %s: eth0 is a %s, want %s", ep.Netns, l.Type(), wantKind)
			}
			addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
			if err != nil {
				t.Fatal(err)
			}
			if len(addrs) != 1 || addrs[0].IPNet.String() != ifc.Prefix.String() {
				t.Errorf("netns %s: eth0 addresses %v, want only %s (and no IPv6 link-local)", ep.Netns, addrs, ifc.Prefix)
			}
			routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
			if err != nil {
				t.Fatal(err)
			}
			var dflt bool
			for _, r := range routes {
				if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == ifc.Gateway.String() && r.LinkIndex == a.Index {
					dflt = true
				}
			}
			if !dflt {
				t.Errorf("netns %s: no default route via %s: %v", ep.Netns, ifc.Gateway, routes)
			}
			if ep.Link == config.LinkVeth {
				var off tap.Offloads
				if err := nsthread.In(ns, func() (err error) { off, err = tap.GetOffloads("eth0"); return }); err != nil {
					t.Fatal(err)
				}
				if off != (tap.Offloads{}) {
					t.Errorf("netns %s: eth0 offloads still on: %+v", ep.Netns, off)
				}
			}
		}()
		if ep.Mode == config.ModeNone {
			continue
		}
		hosts, err := os.ReadFile(etcNetnsDir + "/" + ep.Netns + "/hosts")
		if err != nil {
			t.Fatal(err)
		}
		wantLine := ep.Interfaces[0].IP.String() + "\t" + strings.Join(append([]string{ep.Name}, ep.Aliases...), " ") + "\n"
		if !strings.Contains(string(hosts), "127.0.0.1\tlocalhost\n") || !strings.Contains(string(hosts), wantLine) {
			t.Errorf("netns %s: hosts file:\n%s\nwant a line %q", ep.Netns, hosts, wantLine)
		}
		hn, _ := os.ReadFile(etcNetnsDir + "/" + ep.Netns + "/hostname")
		if string(hn) != ep.Name+"\n" {
			t.Errorf("netns %s: hostname %q", ep.Netns, hn)
		}
	}

	if len(topo.Ports) != 2 {
		t.Fatalf("ports %+v, want 2", topo.Ports)
	}
	for _, pd := range topo.Ports {
		if pd.Network != "front" || pd.Ifname != "eth0" || pd.Port != pd.Endpoint || pd.Netns != pd.Endpoint {
			t.Errorf("port %+v", pd)
		}
		switch pd.Link {
		case config.LinkTAP:
			if _, ok := pd.Dev.(*tap.TAP); !ok || pd.HostLink != "" {
				t.Errorf("tap port %+v", pd)
			}
		case config.LinkVeth:
			if _, ok := pd.Dev.(*tap.Packet); !ok || pd.HostLink != HostLinkName(p.Name, pd.Port) {
				t.Errorf("veth port %+v", pd)
			}
			hl, err := netlink.LinkByName(pd.HostLink)
			if err != nil {
				t.Fatalf("host end: %v", err)
			}
			if hl.Attrs().Flags&net.FlagUp == 0 || hl.Attrs().RawFlags&0x80 == 0 /* IFF_NOARP */ ||
				hl.Attrs().Alias != hostLinkAlias(p.Name, pd.Port) {
				t.Errorf("host end %s: flags %v raw %#x alias %q", pd.HostLink, hl.Attrs().Flags, hl.Attrs().RawFlags, hl.Attrs().Alias)
			}
		default:
			t.Errorf("port %+v: link %q", pd, pd.Link)
		}
	}
}

// assertGone checks that nothing named by the plan is left.
func assertGone(t *testing.T, p *config.Plan, opt Options) {
	t.Helper()
	list := ipNetnsList(t)
	for _, ep := range p.Endpoints {
		if namespaced(ep.Mode) {
			if exists(netnsPath(ep.Netns)) || inList(list, ep.Netns) {
				t.Errorf("netns %s still exists", ep.Netns)
			}
			if exists(etcNetnsDir + "/" + ep.Netns) {
				t.Errorf("%s/%s still exists", etcNetnsDir, ep.Netns)
			}
		}
		for _, ifc := range ep.Interfaces {
			if _, err := netlink.LinkByName(HostLinkName(p.Name, ifc.Port)); err == nil {
				t.Errorf("host link %s still exists", HostLinkName(p.Name, ifc.Port))
			}
		}
	}
	links, _ := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, fmt.Sprintf("ust%x.", os.Getpid())) {
			t.Errorf("temporary TAP %s left in the root namespace", l.Attrs().Name)
		}
	}
	if exists(StatePath(p.Name, opt)) {
		t.Errorf("state file %s still exists", StatePath(p.Name, opt))
	}
}

// closeDevs closes the port descriptors only, as the kernel does for a
// killed process.
func closeDevs(topo *Topology) {
	for _, pd := range topo.Ports {
		pd.Dev.Close()
	}
}

var fakeMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}

func arpRequest(t *testing.T, src, target netip.Addr) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: fakeMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: fakeMAC, SourceProtAddress: src.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice(),
		})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// arpRoundTrip asks the endpoint behind pd for its MAC and waits for the
// kernel's reply on the same port.
func arpRoundTrip(t *testing.T, pd PortDev, ifc config.Interface) {
	t.Helper()
	frames := make(chan []byte, 64)
	go func() {
		b := make([]byte, tap.MaxFrame)
		for {
			n, _, err := pd.Dev.ReadFrame(b)
			if err != nil {
				close(frames)
				return
			}
			select {
			case frames <- append([]byte(nil), b[:n]...):
			default:
			}
		}
	}()
	probe := arpRequest(t, netip.MustParseAddr("10.213.0.99"), ifc.IP)
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := pd.Dev.WriteFrame(probe, packet.Offload{}); err != nil {
			t.Fatalf("port %s: write: %v", pd.Port, err)
		}
	wait:
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					t.Fatalf("port %s: closed", pd.Port)
				}
				pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
				a, ok := pk.Layer(layers.LayerTypeARP).(*layers.ARP)
				if ok && a.Operation == layers.ARPReply &&
					net.IP(a.SourceProtAddress).Equal(ifc.IP.AsSlice()) &&
					net.HardwareAddr(a.SourceHwAddress).String() == ifc.MAC.String() &&
					net.HardwareAddr(a.DstHwAddress).String() == fakeMAC.String() {
					return
				}
			case <-tick.C:
				break wait
			case <-deadline:
				t.Fatalf("port %s: no ARP reply from %s within 5s", pd.Port, ifc.IP)
			}
		}
	}
}

func TestApplyClose(t *testing.T) {
	p, opt := setup(t, "")
	topo, err := Apply(context.Background(), p, opt)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := ReadState(p.Name, opt)
	if err != nil || st == nil || st.PID != os.Getpid() || len(st.Netns) != 4 || len(st.Links) != 1 { // a, b, n and the alias c
		t.Fatalf("state file: %+v, %v", st, err)
	}
	assertApplied(t, p, topo)

	byEndpoint := map[string]config.Interface{}
	for _, ep := range p.Endpoints {
		if len(ep.Interfaces) > 0 {
			byEndpoint[ep.Name] = ep.Interfaces[0]
		}
	}
	for _, pd := range topo.Ports {
		arpRoundTrip(t, pd, byEndpoint[pd.Endpoint])
	}
	ipNetnsExec(t, p)

	if err := topo.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, p, opt)
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, pd := range topo.Ports {
		if _, _, err := pd.Dev.ReadFrame(make([]byte, 64)); !errors.Is(err, tap.ErrClosed) {
			t.Errorf("port %s: read after Close: %v", pd.Port, err)
		}
	}
}

// ipNetnsExec checks that `ip netns exec` enters the namespaces and sees
// the /etc/netns files.
func ipNetnsExec(t *testing.T, p *config.Plan) {
	t.Helper()
	for _, ep := range p.Endpoints {
		if ep.Mode != config.ModeBridge {
			continue
		}
		ip := ep.Interfaces[0].IP.String()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"ip", "-o", "-4", "addr", "show", "dev", "eth0"}, ip + "/24"},
			{[]string{"cat", "/etc/hostname"}, ep.Name},
			{[]string{"getent", "hosts", ep.Name}, ip},
		} {
			out, err := exec.Command("ip", append([]string{"netns", "exec", ep.Netns}, c.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), c.want) {
				t.Errorf("ip netns exec %s %v: %v: %q, want %q", ep.Netns, c.args, err, out, c.want)
			}
		}
	}
}

func TestCrashThenDown(t *testing.T) {
	p, opt := setup(t, "k")
	topo, err := Apply(context.Background(), p, opt)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	closeDevs(topo) // kill -9: the descriptors close, nothing else happens
	if err := Down(p.Name, opt); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, p, opt)
	if err := Down(p.Name, opt); err != nil {
		t.Fatalf("second Down: %v", err)
	}
}

func TestApplyAfterCrash(t *testing.T) {
	p, opt := setup(t, "r")
	topo, err := Apply(context.Background(), p, opt)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	closeDevs(topo)
	// The second run finds the first one's namespaces, host link and files
	// in its state file, removes them and starts over.
	topo2, err := Apply(context.Background(), p, opt)
	if err != nil {
		t.Fatalf("Apply after crash: %v", err)
	}
	assertApplied(t, p, topo2)
	if err := topo2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertGone(t, p, opt)
}

func TestApplyForeignNetns(t *testing.T) {
	p, opt := setup(t, "f")
	foreign := p.Endpoints[2].Netns // the veth endpoint, after the TAP one
	if err := createNetns(foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNetns(foreign) })
	_, err := Apply(context.Background(), p, opt)
	want := fmt.Sprintf("netns %q already exists and was not made by uswitch instance %q", foreign, p.Name)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Apply: %v, want %q", err, want)
	}
	if !exists(netnsPath(foreign)) {
		t.Fatal("Apply removed the foreign namespace")
	}
	deleteNetns(foreign)
	assertGone(t, p, opt) // nothing was created
}

// TestApplyRollback makes the second endpoint fail half-way: Apply must
// remove what it made and return the error with context.
func TestApplyRollback(t *testing.T) {
	p, opt := setup(t, "e")
	p.Endpoints[2].Interfaces[0].MAC = packet.MAC{0x03, 0, 0, 0, 0, 1} // multicast: the kernel refuses it
	_, err := Apply(context.Background(), p, opt)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("endpoint %q", p.Endpoints[2].Name)) {
		t.Fatalf("Apply: %v, want an error about endpoint %q", err, p.Endpoints[2].Name)
	}
	t.Log(err)
	assertGone(t, p, opt)
}

func TestApplyCancelled(t *testing.T) {
	p, opt := setup(t, "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, p, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context: %v", err)
	}
	assertGone(t, p, opt)
}

func TestLock(t *testing.T) {
	opt := Options{StateDir: t.TempDir()}
	unlock, err := Lock("lab", opt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock("lab", opt)
	want := fmt.Sprintf(`instance "lab" is already running (pid %d)`, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("second Lock: %v, want %q", err, want)
	}
	other, err := Lock("other", opt)
	if err != nil {
		t.Fatalf("Lock of another instance: %v", err)
	}
	other()
	unlock()
	unlock() // idempotent
	unlock2, err := Lock("lab", opt)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}

// TestKill9ThenDown applies a plan in a child process, kills it with
// SIGKILL, and checks that Down removes what the child left: namespaces,
// veth host end, files and state file persist after a kill; TAP devices
// die with the process.
func TestKill9ThenDown(t *testing.T) {
	p, opt := setup(t, "9")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessApply$", "-test.v")
	cmd.Env = append(os.Environ(), "USWITCH_TOPO_HELPER="+p.Name, "USWITCH_TOPO_STATEDIR="+opt.StateDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // our own child only
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				break
			}
		}
		io.Copy(io.Discard, out)
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("helper process exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper process not ready within 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err := ReadState(p.Name, opt)
	if err != nil || st == nil || st.PID != cmd.Process.Pid {
		t.Fatalf("state after kill: %+v, %v", st, err)
	}
	for _, ns := range st.Netns {
		if !exists(netnsPath(ns)) {
			t.Errorf("netns %s did not survive the kill (test assumption)", ns)
		}
	}
	if err := Down(p.Name, opt); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, p, opt)
	if err := Down(p.Name, opt); err != nil {
		t.Fatalf("second Down: %v", err)
	}
}

// TestHelperProcessApply is the child of TestKill9ThenDown.
func TestHelperProcessApply(t *testing.T) {
	name := os.Getenv("USWITCH_TOPO_HELPER")
	if name == "" {
		return // the helper process of TestKill9ThenDown, it runs only as its child
	}
	p := testPlanShape(name, "10.213.0")
	if _, err := Apply(context.Background(), p, Options{StateDir: os.Getenv("USWITCH_TOPO_STATEDIR")}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	t.Fatal("not killed within a minute")
}

// netnsRefs lists the network namespaces this process's threads are in
// and its descriptors refer to, to catch a thread left in a namespace or
// a leaked namespace handle.
func netnsRefs(t *testing.T) (threads, fds map[string]int) {
	t.Helper()
	threads, fds = map[string]int{}, map[string]int{}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if l, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net"); err == nil {
			threads[l]++
		}
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "net:[") {
			fds[l]++
		}
	}
	return threads, fds
}

func TestNoNamespaceLeaks(t *testing.T) {
	p, opt := setup(t, "l")
	self, _ := os.Readlink("/proc/self/ns/net")
	_, fdsBefore := netnsRefs(t)
	topo, err := Apply(context.Background(), p, opt)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	threads, fds := netnsRefs(t)
	if len(threads) != 1 || threads[self] == 0 {
		t.Errorf("after Apply, threads are in namespaces %v, want all in %s", threads, self)
	}
	if len(fds) != len(fdsBefore) {
		t.Errorf("after Apply, namespace descriptors %v, before %v", fds, fdsBefore)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p, opt)
}
