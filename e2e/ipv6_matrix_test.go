package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/internal/testenv"
)

// The same dual-stack topology, built once by the kernel (veth pairs, a
// Linux bridge per network and forwarding in a router namespace, iptables
// and ip6tables rules written the way Docker writes them) and once by
// uswitch from a net.toml, must give the same connectivity matrix: ICMP
// echo, TCP and UDP from every endpoint and the uplink's host side to every
// endpoint, gateway and the host side, and the same source address seen by
// the server (masquerade).

// mxNet is a network of the matrix topology.
type mxNet struct {
	name              string
	subnet4, subnet6  netip.Prefix
	isolate, internal bool
}

// gw returns the network's gateway in one family: the first address.
func (n mxNet) gw(v6 bool) netip.Addr {
	if v6 {
		return n.subnet6.Addr().Next()
	}
	return n.subnet4.Addr().Next()
}

// bridge is the network's bridge in the kernel's router namespace.
func (n mxNet) bridge() string { return "br-" + n.name }

// mxEndpoint is an endpoint of the matrix topology.
type mxEndpoint struct {
	name   string // node name: network name and a digit
	net    mxNet
	v4, v6 netip.Addr
}

// Two open networks, one isolated as Docker isolates every bridge network
// from the others, one internal; two endpoints on each.
var (
	mxNets = []mxNet{
		{"a", netip.MustParsePrefix("10.71.1.0/24"), netip.MustParsePrefix("fd00:a1::/64"), false, false},
		{"b", netip.MustParsePrefix("10.71.2.0/24"), netip.MustParsePrefix("fd00:a2::/64"), false, false},
		{"i", netip.MustParsePrefix("10.71.3.0/24"), netip.MustParsePrefix("fd00:a3::/64"), true, false},
		{"p", netip.MustParsePrefix("10.71.4.0/24"), netip.MustParsePrefix("fd00:a4::/64"), true, true},
	}
	// The uplink: the router's side and the host's.
	mxUp4, mxHost4 = netip.MustParsePrefix("10.71.255.2/30"), netip.MustParsePrefix("10.71.255.1/30")
	mxUp6, mxHost6 = netip.MustParsePrefix("fd00:71:ff::2/64"), netip.MustParsePrefix("fd00:71:ff::1/64")
)

// mxEndpoints are the endpoints, in order: x1 and x2 on each network x,
// with host part 10 and 11 in both families.
func mxEndpoints() []mxEndpoint {
	var eps []mxEndpoint
	for _, n := range mxNets {
		for i, host := range []byte{10, 11} {
			a4 := n.subnet4.Addr().As4()
			a4[3] = host
			a6 := n.subnet6.Addr().As16()
			a6[15] = host
			eps = append(eps, mxEndpoint{fmt.Sprintf("%s%d", n.name, i+1), n, netip.AddrFrom4(a4), netip.AddrFrom16(a6)})
		}
	}
	return eps
}

// mxTargets are the matrix's columns: the endpoints, the gateways, the host.
func mxTargets() []matrixTarget {
	var ts []matrixTarget
	for _, e := range mxEndpoints() {
		ts = append(ts, matrixTarget{e.name, e.v4.String(), e.v6.String()})
	}
	for _, n := range mxNets {
		ts = append(ts, matrixTarget{"gw-" + n.name, n.gw(false).String(), n.gw(true).String()})
	}
	return append(ts, matrixTarget{"host", mxHost4.Addr().String(), mxHost6.Addr().String()})
}

// mxRows are the matrix's rows: the endpoints, then the host.
func mxRows() []string {
	var rows []string
	for _, e := range mxEndpoints() {
		rows = append(rows, e.name)
	}
	return append(rows, "host")
}

// mxConfig is the topology as a net.toml; endpoint x1 lives in namespace
// NAME-x1, the host side in NAME-host.
func mxConfig(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\n\n[uplink]\naddress = %q\nhost_address = %q\n", name, mxUp4, mxHost4)
	fmt.Fprintf(&b, "address6 = %q\nhost_address6 = %q\n", mxUp6, mxHost6)
	fmt.Fprintf(&b, "netns = %q\n", name+"-host")
	for _, n := range mxNets {
		fmt.Fprintf(&b, "\n[[network]]\nname = %q\nsubnet = %q\nsubnet6 = %q\nisolate = %v\ninternal = %v\ndns = false\n",
			n.name, n.subnet4, n.subnet6, n.isolate, n.internal)
	}
	for _, e := range mxEndpoints() {
		fmt.Fprintf(&b, "\n[[endpoint]]\nname = %q\nnetwork = %q\nip = %q\nip6 = %q\n", name+"-"+e.name, e.net.name, e.v4, e.v6)
	}
	return b.String()
}

// mxRules are the router's iptables (v6 false) or ip6tables rules, for
// iptables-restore: Docker's isolation chains (an isolated bridge's
// traffic to any other bridge dropped, replies included; an internal
// bridge's traffic to and from outside its subnet dropped), invalid
// packets dropped, masquerade of every non-internal subnet out of the
// uplink. The host side stands for the host's own stack, as docker0's host
// reaches every container by its address: forwarding from the uplink is
// accepted. And as SPEC §6 makes a network's gateway the host, TCP and UDP
// to a gateway from its own network are sent to the host side's address
// (on Docker the host owns that address).
func mxRules(v6 bool) string {
	host, uplinkDev := mxHost4.Addr(), "upl"
	if v6 {
		host = mxHost6.Addr()
	}
	var f, n strings.Builder
	f.WriteString("*filter\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n")
	f.WriteString("-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n")
	n.WriteString("*nat\n")
	for _, nw := range mxNets {
		sub := nw.subnet4
		if v6 {
			sub = nw.subnet6
		}
		br := nw.bridge()
		switch {
		case nw.internal:
			fmt.Fprintf(&f, "-A DOCKER-ISOLATION-STAGE-1 -i %s ! -d %s -j DROP\n", br, sub)
			fmt.Fprintf(&f, "-A DOCKER-ISOLATION-STAGE-1 -o %s ! -s %s -j DROP\n", br, sub)
			continue
		case nw.isolate:
			fmt.Fprintf(&f, "-A DOCKER-ISOLATION-STAGE-1 -i %s ! -o %s -j DOCKER-ISOLATION-STAGE-2\n", br, br)
		}
		fmt.Fprintf(&n, "-A POSTROUTING -s %s -o %s -j MASQUERADE\n", sub, uplinkDev)
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(&n, "-A PREROUTING -i %s -d %s -p %s -j DNAT --to-destination %s\n", br, nw.gw(v6), proto, host)
		}
	}
	for _, nw := range mxNets {
		fmt.Fprintf(&f, "-A DOCKER-ISOLATION-STAGE-2 -o %s -j DROP\n", nw.bridge())
	}
	f.WriteString("-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-ISOLATION-STAGE-2 -j RETURN\nCOMMIT\n")
	n.WriteString("COMMIT\n")
	return f.String() + n.String()
}

// kernelMatrix builds the topology with the kernel in namespaces of the
// test's own: NAME-kr the router (a bridge per network, forwarding on, the
// rules), NAME-kh the uplink's host side, NAME-kX an endpoint X. It returns
// the namespace of each row.
func kernelMatrix(t *testing.T, name string) map[string]string {
	t.Helper()
	router, host := name+"-kr", name+"-kh"
	ns := map[string]string{"host": host}
	for _, e := range mxEndpoints() {
		ns[e.name] = name + "-k" + e.name
	}
	for _, n := range append([]string{router}, slices.Collect(maps.Values(ns))...) {
		newNetns(t, n)
		// Addresses usable at once, as uswitch's nodad ones are.
		mustNsExec(t, n, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		mustNsExec(t, n, "ip", "link", "set", "lo", "up")
	}
	addrs := func(n, dev string, a4, a6 netip.Prefix) {
		mustNsExec(t, n, "ip", "addr", "add", a4.String(), "dev", dev)
		mustNsExec(t, n, "ip", "-6", "addr", "add", a6.String(), "dev", dev, "nodad")
		mustNsExec(t, n, "ip", "link", "set", dev, "up")
	}
	for _, nw := range mxNets {
		mustNsExec(t, router, "ip", "link", "add", nw.bridge(), "type", "bridge")
		addrs(router, nw.bridge(), netip.PrefixFrom(nw.gw(false), nw.subnet4.Bits()), netip.PrefixFrom(nw.gw(true), nw.subnet6.Bits()))
	}
	for _, e := range mxEndpoints() {
		veth := "v" + e.name
		mustNsExec(t, router, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns[e.name])
		mustNsExec(t, router, "ip", "link", "set", veth, "master", e.net.bridge(), "up")
		addrs(ns[e.name], "eth0", netip.PrefixFrom(e.v4, e.net.subnet4.Bits()), netip.PrefixFrom(e.v6, e.net.subnet6.Bits()))
		mustNsExec(t, ns[e.name], "ip", "route", "add", "default", "via", e.net.gw(false).String())
		mustNsExec(t, ns[e.name], "ip", "-6", "route", "add", "default", "via", e.net.gw(true).String())
	}
	mustNsExec(t, router, "ip", "link", "add", "upl", "type", "veth", "peer", "name", "upl", "netns", host)
	addrs(router, "upl", mxUp4, mxUp6)
	addrs(host, "upl", mxHost4, mxHost6)
	mustNsExec(t, router, "ip", "route", "add", "default", "via", mxHost4.Addr().String())
	mustNsExec(t, router, "ip", "-6", "route", "add", "default", "via", mxHost6.Addr().String())
	for _, nw := range mxNets {
		if !nw.internal { // as uswitch's uplink routes
			mustNsExec(t, host, "ip", "route", "add", nw.subnet4.String(), "via", mxUp4.Addr().String())
			mustNsExec(t, host, "ip", "-6", "route", "add", nw.subnet6.String(), "via", mxUp6.Addr().String())
		}
	}
	mustNsExec(t, router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// Frames a bridge switches do not go through iptables (where the
	// br_netfilter module is loaded, it would send them there: the
	// internal network's rules would drop its own neighbour solicitations,
	// sent to multicast addresses outside its subnet).
	mustNsExec(t, router, "sysctl", "-q", "-e", "-w", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0")
	for _, v6 := range []bool{false, true} {
		cmd := "iptables-restore"
		if v6 {
			cmd = "ip6tables-restore"
		}
		file := filepath.Join(t.TempDir(), cmd)
		require.NoError(t, os.WriteFile(file, []byte(mxRules(v6)), 0o644))
		mustNsExec(t, router, cmd, file)
	}
	return ns
}

// mxWant is the matrix the kernel gives in both families, Docker's
// semantics: open networks a and b reach each other; the isolated network
// i reaches no other network, nor does any reach it; the internal network
// p reaches only itself; every network but p reaches the host side, and
// the host side every endpoint but p's. A gateway answers ping from every
// network, as the router owns every gateway address; TCP and UDP to a
// gateway reach the host side from the gateway's own network only (the
// DNAT of "the gateway is the host"), never on an internal network, and
// from the host side the gateways of networks it has a route to answer
// ping only.
const mxWant = `from\to a1    a2    b1    b2    i1    i2    p1    p2    gw-a  gw-b  gw-i  gw-p  host
a1      ·     ok    ok    ok    —     —     —     —     ok    i     i     i     ok
a2      ok    ·     ok    ok    —     —     —     —     ok    i     i     i     ok
b1      ok    ok    ·     ok    —     —     —     —     i     ok    i     i     ok
b2      ok    ok    ok    ·     —     —     —     —     i     ok    i     i     ok
i1      —     —     —     —     ·     ok    —     —     i     i     ok    i     ok
i2      —     —     —     —     ok    ·     —     —     i     i     ok    i     ok
p1      —     —     —     —     —     —     ·     ok    i     i     i     i     —
p2      —     —     —     —     —     —     ok    ·     i     i     i     i     —
host    ok    ok    ok    ok    ok    ok    —     —     i     i     i     —     ·
`

func TestIPv6MatrixKernelVsUswitch(t *testing.T) {
	testenv.NeedRoot(t, "/dev/net/tun", "ip", "sysctl", "iptables-restore", "ip6tables-restore")
	name := prefix("mx")
	targets := mxTargets()
	own := map[string]matrixTarget{}
	for _, d := range targets {
		own[d.name] = d
	}

	// Both builds side by side, each in namespaces of its own.
	kns := kernelMatrix(t, name)
	start(t, name, writeConfig(t, mxConfig(name)))
	uns := map[string]string{"host": name + "-host"}
	for _, e := range mxEndpoints() {
		uns[e.name] = name + "-" + e.name
	}
	for _, ns := range []map[string]string{kns, uns} {
		for _, n := range ns {
			matrixServe(t, n)
		}
	}
	var kernel, uswitch map[matrixProbe]matrixResult
	done := make(chan struct{})
	go func() { kernel = runMatrix(t, kns, targets); close(done) }()
	uswitch = runMatrix(t, uns, targets)
	<-done

	for _, v6 := range []bool{false, true} {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		kt, ut := matrixTable(kernel, v6, mxRows(), targets), matrixTable(uswitch, v6, mxRows(), targets)
		t.Logf("%s matrix, kernel (ok: ICMP, TCP and UDP; —: none; else the initials of those that did):\n%s", fam, kt)
		t.Logf("%s matrix, uswitch:\n%s", fam, ut)
		t.Logf("%s TCP servers that saw another source than the client's own, kernel:\n%s", fam, matrixSeen(kernel, v6, own))
		t.Logf("%s the same, uswitch:\n%s", fam, matrixSeen(uswitch, v6, own))
		require.Equal(t, mxWant, kt, "the kernel's %s matrix: the reference is not what Docker's rules give", fam)
	}
	diff := matrixDiff(kernel, uswitch, "kernel", "uswitch")
	require.Empty(t, diff, "cells where uswitch differs from the kernel:\n%s", strings.Join(diff, "\n"))
}
