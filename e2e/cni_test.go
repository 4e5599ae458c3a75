package e2e

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/datapath"
)

// cniTools are the programs `make cni-tools` installs into bin/cni.
var cniTools = []string{"cnitool", "bridge", "host-local", "portmap"}

var (
	cniOnce   sync.Once
	cniPath   string // CNI_PATH: the race-built uswitch-cni, then bin/cni
	cnitoolAt string
	cniErr    error
)

// cniSetup builds the plugin next to the uswitch binary and installs the
// CNI tools with `make cni-tools` when they are missing, once.
func cniSetup(t *testing.T) {
	t.Helper()
	needRoot(t)
	cniOnce.Do(func() {
		tools, err := filepath.Abs("../bin/cni")
		if err != nil {
			cniErr = err
			return
		}
		for _, tool := range cniTools {
			if _, err := os.Stat(filepath.Join(tools, tool)); err != nil {
				if out, err := exec.Command("make", "-C", "..", "cni-tools").CombinedOutput(); err != nil {
					cniErr = fmt.Errorf("make cni-tools: %v\n%s", err, out)
					return
				}
				break
			}
		}
		dir := filepath.Dir(binary)
		if out, err := exec.Command("go", "build", "-race", "-o", filepath.Join(dir, "uswitch-cni"), "../cmd/uswitch-cni").CombinedOutput(); err != nil {
			cniErr = fmt.Errorf("building uswitch-cni: %v\n%s", err, out)
			return
		}
		cniPath = dir + string(os.PathListSeparator) + tools
		cnitoolAt = filepath.Join(tools, "cnitool")
	})
	require.NoError(t, cniErr)
}

// cniRuntime runs cnitool the way a container runtime drives plugins, with
// the network configurations of its own directory.
type cniRuntime struct {
	t       *testing.T
	confDir string
	hostNS  string // "" or the namespace cnitool runs in (`ip netns exec`)
}

// newCNIRuntime writes the configuration lists into a directory of the
// test and removes cnitool's cached results of the networks at the end.
func newCNIRuntime(t *testing.T, hostNS string, lists ...map[string]any) *cniRuntime {
	t.Helper()
	cniSetup(t)
	r := &cniRuntime{t: t, confDir: t.TempDir(), hostNS: hostNS}
	for _, l := range lists {
		b, err := json.MarshalIndent(l, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(r.confDir, l["name"].(string)+".conflist"), b, 0o644))
		name := l["name"].(string)
		t.Cleanup(func() {
			// libcni caches every result in /var/lib/cni/results as
			// NETWORK-CONTAINERID-IFNAME; DEL removes it, a failed test may not.
			old, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", name+"-*"))
			for _, f := range old {
				os.Remove(f)
			}
		})
	}
	return r
}

// run runs `cnitool args...` with capability arguments capArgs (JSON, or
// "") and interface ifname, and returns its stdout.
func (r *cniRuntime) run(capArgs, ifname string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cnitoolAt, args...)
	if r.hostNS != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.hostNS, cnitoolAt}, args...)...)
	}
	cmd.Env = append(os.Environ(), "CNI_PATH="+cniPath, "NETCONFPATH="+r.confDir, "CNI_IFNAME="+ifname)
	if capArgs != "" {
		cmd.Env = append(cmd.Env, "CAP_ARGS="+capArgs)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("cnitool %s: %w\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// add runs `cnitool add` for eth0 of ns and parses the result with the
// CNI library's 1.1.0 result type.
func (r *cniRuntime) add(network, ns, capArgs string) *types100.Result {
	r.t.Helper()
	out, err := r.run(capArgs, "eth0", "add", network, netnsPath(ns))
	require.NoError(r.t, err)
	res, err := types100.NewResult([]byte(out))
	require.NoError(r.t, err, "%s", out)
	return res.(*types100.Result)
}

// mustRun runs cnitool and fails the test on an error.
func (r *cniRuntime) mustRun(args ...string) {
	r.t.Helper()
	_, err := r.run("", "eth0", args...)
	require.NoError(r.t, err)
}

// netnsPath is the path of the `ip netns` namespace name.
func netnsPath(name string) string { return filepath.Join("/var/run/netns", name) }

// cnitoolContainerID is the container ID cnitool passes for a netns path.
func cnitoolContainerID(path string) string {
	s := sha512.Sum512([]byte(path))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

// cniPortName is the port name of the attachment of eth0 of the netns at
// path made with cnitool.
func cniPortName(path string) string { return "cni-" + cnitoolContainerID(path)[:12] }

// newNetns makes an empty namespace, removed at the end of the test.
func newNetns(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
}

// cniAddress is the first address of a result with its interface.
type cniAddress struct {
	ns      string
	ip      string // without the prefix length
	prefix  string // with it
	gateway string
}

// sandboxAddress finds in res the address of the interface inside ns and
// checks that ns really has it on that interface, with the default route
// via the result's gateway.
func sandboxAddress(t *testing.T, ns string, res *types100.Result) cniAddress {
	t.Helper()
	var a cniAddress
	for _, c := range res.IPs {
		if c.Interface != nil && res.Interfaces[*c.Interface].Sandbox == netnsPath(ns) {
			require.Equal(t, "eth0", res.Interfaces[*c.Interface].Name)
			a = cniAddress{ns: ns, ip: c.Address.IP.String(), prefix: c.Address.String(), gateway: c.Gateway.String()}
		}
	}
	require.NotEmpty(t, a.ip, "no address in sandbox %s in %+v", ns, res)
	var mac string
	for _, i := range res.Interfaces {
		if i.Sandbox == netnsPath(ns) {
			mac = i.Mac
		}
	}
	l, addrs, routes, err := linkIn(t, ns, "eth0")
	require.NoError(t, err)
	require.Equal(t, mac, l.Attrs().HardwareAddr.String())
	var got []string
	for _, ad := range addrs {
		got = append(got, ad.IPNet.String())
	}
	require.Contains(t, got, a.prefix)
	var gw string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			gw = r.Gw.String()
		}
	}
	require.Equal(t, a.gateway, gw, "default route in %s: %v", ns, routes)
	return a
}

// linkIn returns the interface ifname of ns with its IPv4 addresses and
// routes.
func linkIn(t *testing.T, ns, ifname string) (l netlink.Link, addrs []netlink.Addr, routes []netlink.Route, err error) {
	t.Helper()
	inNetns(t, ns, func() {
		if l, err = netlink.LinkByName(ifname); err != nil {
			return
		}
		if addrs, err = netlink.AddrList(l, netlink.FAMILY_V4); err != nil {
			return
		}
		routes, err = netlink.RouteList(l, netlink.FAMILY_V4)
	})
	return l, addrs, routes, err
}

// tcpAnswer dials addr from ns and returns the server's answer (the
// client's address as the server saw it, see serveTCP).
func tcpAnswer(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() { c, err = net.DialTimeout("tcp4", addr, 3*time.Second) })
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(string(b))
	return host, err
}

// cniServers listens in each container namespace on TCP 80 and 7000 and on
// UDP 53 and 7001 (wildcard sockets, so they serve whatever interface a
// plugin adds later) and answers with the client's address.
func cniServers(t *testing.T, namespaces ...string) {
	for _, ns := range namespaces {
		serveTCP(t, ns, "0.0.0.0:80")
		serveTCP(t, ns, "0.0.0.0:7000")
		serveUDP(t, ns, "0.0.0.0:53")
		serveUDP(t, ns, "0.0.0.0:7001")
	}
}

// cniPortMappings publish TCP 80 as 18080 and UDP 53 as 15353.
const cniPortMappings = `{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"},{"hostPort":15353,"containerPort":53,"protocol":"udp"}]}`

// connectivity is what the same checks see through one plugin setup: a
// and b attached to the same network, a publishing cniPortMappings, the
// host side in hostNS reaching the published ports at hostAddr.
type connectivity struct {
	pingPeer, pingGateway bool
	tcpPeer, udpPeer      string // the client address b saw, "" when unreachable
	tcpPublished          string // the client address a saw through the port mapping
	udpPublished          string
	tcpLoopback           string // through 127.0.0.1:18080 in hostNS
}

// checkConnectivity runs the checks from a to b, to the gateway, and from
// hostNS to the published ports.
func checkConnectivity(t *testing.T, a, b cniAddress, hostNS, hostAddr string) connectivity {
	t.Helper()
	var c connectivity
	answered := func(ns, dst string) bool {
		r := mustEcho(t, ns, dst, echoOpts{count: 2})
		return r.loss() == 0
	}
	c.pingPeer = answered(a.ns, b.ip)
	c.pingGateway = answered(a.ns, a.gateway)
	c.tcpPeer, _ = tcpAnswer(t, a.ns, net.JoinHostPort(b.ip, "7000"))
	c.udpPeer, _ = udpExchange(t, a.ns, net.JoinHostPort(b.ip, "7001"))
	c.tcpPublished, _ = tcpAnswer(t, hostNS, net.JoinHostPort(hostAddr, "18080"))
	c.udpPublished, _ = udpExchange(t, hostNS, net.JoinHostPort(hostAddr, "15353"))
	c.tcpLoopback, _ = tcpAnswer(t, hostNS, "127.0.0.1:18080")
	return c
}

// cniTestConfig: an instance with the network front (embedded DNS on) and
// one configured endpoint, its uplink's host side in <name>-host.
func cniTestConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.254.7.2/30"
host_address = "10.254.7.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.89.0.0/24"
dns = true

[[endpoint]]
name = "%[1]s-srv"
network = "front"
ip = "10.89.0.200"
`, name)
}

// uswitchConflist is a network configuration list with the one plugin
// uswitch-cni for network front of instance name.
func uswitchConflist(netName, instance string) map[string]any {
	return map[string]any{
		"cniVersion": "1.1.0", "name": netName,
		"plugins": []map[string]any{{
			"type": "uswitch-cni", "instance": instance, "network": "front",
			"capabilities": map[string]bool{"portMappings": true},
		}},
	}
}

// TestCNIPlugin drives uswitch-cni with the real cnitool against a running
// instance, then runs the same connectivity checks on the same namespaces
// with the reference plugins bridge + host-local + portmap.
func TestCNIPlugin(t *testing.T) {
	needRoot(t)
	name := prefix("cni")
	in := start(t, name, writeConfig(t, cniTestConfig(name)))
	hostNS := name + "-host"
	c1, c2 := name+"-c1", name+"-c2"
	newNetns(t, c1)
	newNetns(t, c2)
	cniServers(t, c1, c2)
	serveTCP(t, name+"-srv", "0.0.0.0:7000")

	t.Run("uswitch-cni", func(t *testing.T) {
		netName := name + "net"
		rt := newCNIRuntime(t, "", uswitchConflist(netName, name))
		// Plus TCP 7000 on a host port the instance picks: the lowest of
		// its publish_range.
		random := strings.Replace(cniPortMappings, "]}", `,{"hostPort":0,"containerPort":7000,"protocol":"tcp"}]}`, 1)
		res1 := rt.add(netName, c1, random)
		res2 := rt.add(netName, c2, "")
		t.Logf("uswitch-cni result for %s: %+v", c1, res1)
		require.Len(t, res1.Interfaces, 1, "one interface, in the sandbox")
		require.Equal(t, []string{"10.89.0.1"}, res1.DNS.Nameservers, "dns = true: the gateway answers DNS")
		a, b := sandboxAddress(t, c1, res1), sandboxAddress(t, c2, res2)
		require.Equal(t, "10.89.0.1", a.gateway)
		require.NotEqual(t, a.ip, b.ip)
		for _, ns := range []string{c1, c2} {
			require.Equal(t, "front", in.port(t, cniPortName(netnsPath(ns))).Network, "port of %s", ns)
		}

		viaUswitch := checkConnectivity(t, a, b, hostNS, "10.254.7.2")
		t.Logf("uswitch-cni: %+v", viaUswitch)
		require.Equal(t, connectivity{
			pingPeer: true, pingGateway: true, tcpPeer: a.ip, udpPeer: a.ip,
			tcpPublished: "10.254.7.1", udpPublished: "10.254.7.1", tcpLoopback: "10.254.7.1",
		}, viaUswitch)
		got, err := tcpAnswer(t, hostNS, "10.254.7.2:32768")
		require.NoError(t, err, "the port mapping with hostPort 0")
		require.Equal(t, "10.254.7.1", got)
		// And a configured endpoint of the instance.
		got, err = tcpAnswer(t, c1, "10.89.0.200:7000")
		require.NoError(t, err)
		require.Equal(t, a.ip, got)

		rt.mustRun("check", netName, netnsPath(c1))
		rt.mustRun("status", netName, netnsPath(c1))
		// CHECK looks inside: without its address, c2 fails it.
		addr, err := netlink.ParseAddr(b.prefix)
		require.NoError(t, err)
		inNetns(t, c2, func() {
			var l netlink.Link
			if l, err = netlink.LinkByName("eth0"); err == nil {
				err = netlink.AddrDel(l, addr)
			}
		})
		require.NoError(t, err)
		_, err = rt.run("", "eth0", "check", netName, netnsPath(c2))
		require.ErrorContains(t, err, "Failed to match addr "+b.prefix)

		// DEL removes the port, the interface and the published ports;
		// DEL again succeeds.
		rt.mustRun("del", netName, netnsPath(c1))
		require.NotContains(t, portNames(in.ports(t)), cniPortName(netnsPath(c1)))
		_, _, _, err = linkIn(t, c1, "eth0")
		require.Error(t, err, "eth0 is gone from %s", c1)
		_, err = tcpAnswer(t, hostNS, "10.254.7.2:18080")
		require.Error(t, err, "the published port is gone")
		rt.mustRun("del", netName, netnsPath(c1))

		// DEL after the runtime deleted the netns.
		c3 := name + "-c3"
		newNetns(t, c3)
		rt.add(netName, c3, "")
		require.Contains(t, portNames(in.ports(t)), cniPortName(netnsPath(c3)))
		out, err := exec.Command("ip", "netns", "del", c3).CombinedOutput()
		require.NoError(t, err, "%s", out)
		rt.mustRun("del", netName, netnsPath(c3))
		require.NotContains(t, portNames(in.ports(t)), cniPortName(netnsPath(c3)))

		// GC: an attachment cnitool does not know of (made by running
		// the plugin directly) is collected; cnitool DELs those it knows.
		c4 := name + "-c4"
		newNetns(t, c4)
		pluginDirect(t, "ADD", "gc-orphan-0123456789", netnsPath(c4), uswitchConflist(netName, name))
		require.Contains(t, portNames(in.ports(t)), "cni-gc-orphan-01")
		rt.mustRun("gc", netName, netnsPath(c2))
		names := portNames(in.ports(t))
		require.NotContains(t, names, "cni-gc-orphan-01")
		require.NotContains(t, names, cniPortName(netnsPath(c2)))
		require.Contains(t, names, name+"-srv", "GC leaves the configured endpoints")
	})

	// The reference plugins, run by cnitool in the uplink's host
	// namespace: bridge makes its bridge, host end of the veth and gateway
	// address there. Without portmap first (it needs iptables), so that
	// the bridge part of the comparison runs on any machine.
	reference := func(t *testing.T, netName string, portmap bool) *cniRuntime {
		plugins := []map[string]any{
			{"type": "bridge", "bridge": name + "br", "isGateway": true, "ipMasq": false,
				"ipam": map[string]any{"type": "host-local", "subnet": "10.88.0.0/24", "dataDir": t.TempDir(),
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}}}},
		}
		if portmap {
			plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
		}
		return newCNIRuntime(t, hostNS, map[string]any{"cniVersion": "1.1.0", "name": netName, "plugins": plugins})
	}

	t.Run("reference", func(t *testing.T) {
		netName := name + "ref"
		rt := reference(t, netName, false)
		res1 := rt.add(netName, c1, cniPortMappings)
		res2 := rt.add(netName, c2, "")
		t.Logf("reference result for %s: %+v", c1, res1)
		a, b := sandboxAddress(t, c1, res1), sandboxAddress(t, c2, res2)
		require.Equal(t, "10.88.0.1", a.gateway)

		viaReference := checkConnectivity(t, a, b, hostNS, "10.88.0.1")
		t.Logf("reference without portmap: %+v", viaReference)
		require.Equal(t, connectivity{pingPeer: true, pingGateway: true, tcpPeer: a.ip, udpPeer: a.ip}, viaReference,
			"without portmap, the port mappings go unused")

		rt.mustRun("check", netName, netnsPath(c1))
		rt.mustRun("del", netName, netnsPath(c1))
		rt.mustRun("del", netName, netnsPath(c1))
		c5 := name + "-c5"
		newNetns(t, c5)
		rt.add(netName, c5, "")
		out, err := exec.Command("ip", "netns", "del", c5).CombinedOutput()
		require.NoError(t, err, "%s", out)
		rt.mustRun("del", netName, netnsPath(c5))
		rt.mustRun("del", netName, netnsPath(c2))
	})

	t.Run("reference-portmap", func(t *testing.T) {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Fatal("the reference portmap plugin needs iptables, which this machine lacks (Debian: apt-get install iptables): " +
				"the comparison of port mappings cannot run without it; the rest of the comparison ran in TestCNIPlugin/reference")
		}
		netName := name + "rpm"
		rt := reference(t, netName, true)
		res1 := rt.add(netName, c1, cniPortMappings)
		res2 := rt.add(netName, c2, "")
		a, b := sandboxAddress(t, c1, res1), sandboxAddress(t, c2, res2)
		viaReference := checkConnectivity(t, a, b, hostNS, "10.88.0.1")
		t.Logf("reference with portmap: %+v", viaReference)
		require.Equal(t, connectivity{
			pingPeer: true, pingGateway: true, tcpPeer: a.ip, udpPeer: a.ip,
			tcpPublished: "10.88.0.1", udpPublished: "10.88.0.1", tcpLoopback: "10.88.0.1",
		}, viaReference)
		rt.mustRun("check", netName, netnsPath(c1))
		rt.mustRun("del", netName, netnsPath(c1))
		rt.mustRun("del", netName, netnsPath(c1))
		rt.mustRun("del", netName, netnsPath(c2))
	})
}

// pluginDirect runs uswitch-cni as a runtime would, without cnitool, for
// eth0 of the netns at path with the first plugin of conflist, and fails
// the test on an error.
func pluginDirect(t *testing.T, command, containerID, path string, conflist map[string]any) string {
	t.Helper()
	out, ce := pluginRun(t, command, containerID, path, conflist)
	require.Nil(t, ce, "uswitch-cni %s", command)
	return out
}

// pluginRun runs uswitch-cni like pluginDirect and returns its stdout or
// the CNI error it printed.
func pluginRun(t *testing.T, command, containerID, path string, conflist map[string]any) (string, *types.Error) {
	t.Helper()
	conf := maps.Clone(conflist["plugins"].([]map[string]any)[0])
	conf["cniVersion"], conf["name"] = conflist["cniVersion"], conflist["name"]
	b, err := json.Marshal(conf)
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(filepath.Dir(binary), "uswitch-cni"))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + containerID, "CNI_NETNS=" + path,
		"CNI_IFNAME=eth0", "CNI_PATH=" + cniPath}
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.Output()
	if err != nil {
		var ce types.Error
		require.NoError(t, json.Unmarshal(out, &ce), "uswitch-cni %s: %v: %s", command, err, out)
		return "", &ce
	}
	return string(out), nil
}

// portNames lists the names of ports.
func portNames(ports []datapath.PortInfo) []string {
	var names []string
	for _, p := range ports {
		names = append(names, p.Name)
	}
	return names
}

// TestCNIParallelAdds: 20 ADDs at once through cnitool, half of them with
// "link": "veth", all succeed with distinct addresses and the asked link
// kind, and 20 DELs at once remove them all.
func TestCNIParallelAdds(t *testing.T) {
	needRoot(t)
	name := prefix("cnp")
	in := start(t, name, writeConfig(t, cniTestConfig(name)))
	// Every other container through a configuration with "link": "veth".
	tapNet, vethNet := name+"net", name+"veth"
	veth := uswitchConflist(vethNet, name)
	veth["plugins"].([]map[string]any)[0]["link"] = "veth"
	rt := newCNIRuntime(t, "", uswitchConflist(tapNet, name), veth)
	netOf := func(i int) string {
		if i%2 == 1 {
			return vethNet
		}
		return tapNet
	}

	// Port names keep 12 characters of cnitool's container ID, a hash of
	// the netns path: pick paths whose names differ.
	var namespaces []string
	seen := map[string]bool{}
	for i := 0; len(namespaces) < 20; i++ {
		ns := fmt.Sprintf("%s-p%d", name, i)
		if port := cniPortName(netnsPath(ns)); !seen[port] {
			seen[port] = true
			namespaces = append(namespaces, ns)
			newNetns(t, ns)
		}
	}
	results := make([]*types100.Result, len(namespaces))
	errs := make([]error, len(namespaces))
	var wg sync.WaitGroup
	began := time.Now()
	for i, ns := range namespaces {
		wg.Go(func() {
			out, err := rt.run("", "eth0", "add", netOf(i), netnsPath(ns))
			if err != nil {
				errs[i] = err
				return
			}
			r, err := types100.NewResult([]byte(out))
			if err != nil {
				errs[i] = fmt.Errorf("%w: %s", err, out)
				return
			}
			results[i] = r.(*types100.Result)
		})
	}
	wg.Wait()
	t.Logf("20 parallel ADDs through cnitool took %v", time.Since(began).Round(time.Millisecond))
	ips := map[string]string{}
	for i, ns := range namespaces {
		require.NoError(t, errs[i], ns)
		a := sandboxAddress(t, ns, results[i])
		l, _, _, err := linkIn(t, ns, "eth0")
		require.NoError(t, err)
		kind := map[string]string{tapNet: "tuntap", vethNet: "veth"}[netOf(i)]
		require.Equal(t, kind, l.Type(), "eth0 of %s through %s", ns, netOf(i))
		require.Empty(t, ips[a.ip], "%s and %s both got %s", ips[a.ip], ns, a.ip)
		ips[a.ip] = ns
	}
	require.Len(t, ips, 20)
	names := portNames(in.ports(t))
	for _, ns := range namespaces {
		require.Contains(t, names, cniPortName(netnsPath(ns)))
	}
	// Every one reaches the configured endpoint and the first attachment.
	for _, ns := range namespaces {
		ping(t, ns, "10.89.0.200")
	}

	for i, ns := range namespaces {
		wg.Go(func() { _, errs[i] = rt.run("", "eth0", "del", netOf(i), netnsPath(ns)) })
	}
	wg.Wait()
	for i := range namespaces {
		require.NoError(t, errs[i])
	}
	names = portNames(in.ports(t))
	for _, ns := range namespaces {
		require.NotContains(t, names, cniPortName(netnsPath(ns)))
	}
}

// TestCNIInstanceDown: with the instance stopped, STATUS fails, ADD is
// "try again later" (11), and DEL succeeds, twice, leaving no interface in
// the container's namespace.
func TestCNIInstanceDown(t *testing.T) {
	needRoot(t)
	name := prefix("cnd")
	in := start(t, name, writeConfig(t, cniTestConfig(name)))
	netName := name + "net"
	conflist := uswitchConflist(netName, name)
	rt := newCNIRuntime(t, "", conflist)
	c1 := name + "-c1"
	newNetns(t, c1)
	rt.add(netName, c1, "")
	rt.mustRun("status", netName, netnsPath(c1))

	require.NoError(t, in.stop())
	_, err := rt.run("", "eth0", "status", netName, netnsPath(c1))
	require.ErrorContains(t, err, "no uswitch instance is running")
	_, ce := pluginRun(t, "ADD", "down-0123456789", netnsPath(c1), conflist)
	require.NotNil(t, ce)
	require.Equal(t, types.ErrTryAgainLater, ce.Code, "%v", ce)

	rt.mustRun("del", netName, netnsPath(c1))
	_, _, _, err = linkIn(t, c1, "eth0")
	require.Error(t, err, "eth0 is gone from %s", c1)
	rt.mustRun("del", netName, netnsPath(c1))
}
