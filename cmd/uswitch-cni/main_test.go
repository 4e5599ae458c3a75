package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/live"
)

// The test binary is also the plugin and a fake IPAM plugin: env links it
// into a CNI_PATH as uswitch-cni and test-ipam, and the tests run those as
// a runtime would, with CNI_* variables and the configuration on stdin.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "uswitch-cni":
		main()
		os.Exit(0)
	case "test-ipam":
		fakeIPAM()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// env is a CNI_PATH with the plugin and a fake instance for it.
type env struct {
	t      *testing.T
	dir    string
	daemon *fakeDaemon
}

func newEnv(t *testing.T) *env {
	exe, err := os.Executable()
	require.NoError(t, err)
	e := &env{t: t, dir: t.TempDir(), daemon: newFakeDaemon(t)}
	for _, name := range []string{"uswitch-cni", "test-ipam"} {
		require.NoError(t, os.Symlink(exe, filepath.Join(e.dir, name)))
	}
	return e
}

// conf is a configuration for the fake instance's network front, with
// extra keys added or replaced (a nil value deletes a key).
func (e *env) conf(cniVersion string, extra map[string]any) map[string]any {
	c := map[string]any{
		"cniVersion": cniVersion, "name": "mynet", "type": "uswitch-cni",
		"instance": "lab", "socket": e.daemon.socket, "network": "front",
	}
	maps.Copy(c, extra)
	maps.DeleteFunc(c, func(_ string, v any) bool { return v == nil })
	return c
}

// call is one plugin invocation.
type call struct {
	cmd, containerID, netns, ifname string
	conf                            map[string]any
}

// run runs the plugin and returns its stdout, or the CNI error it printed.
func (e *env) run(c call) ([]byte, *types.Error) {
	e.t.Helper()
	stdin, err := json.Marshal(c.conf)
	require.NoError(e.t, err)
	cmd := exec.Command(filepath.Join(e.dir, "uswitch-cni"))
	cmd.Env = []string{
		"CNI_COMMAND=" + c.cmd, "CNI_CONTAINERID=" + c.containerID, "CNI_NETNS=" + c.netns,
		"CNI_IFNAME=" + c.ifname, "CNI_PATH=" + e.dir,
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ce types.Error
		require.NoError(e.t, json.Unmarshal(stdout.Bytes(), &ce), "%s %v: stdout %q stderr %q", c.cmd, err, stdout.String(), stderr.String())
		return nil, &ce
	}
	return stdout.Bytes(), nil
}

// mustRun runs the plugin and fails the test on an error.
func (e *env) mustRun(c call) []byte {
	e.t.Helper()
	out, ce := e.run(c)
	require.Nil(e.t, ce, "%s: %v", c.cmd, ce)
	return out
}

// requireCode runs the plugin and requires a CNI error with code.
func (e *env) requireCode(c call, code uint) *types.Error {
	e.t.Helper()
	out, ce := e.run(c)
	require.NotNil(e.t, ce, "%s succeeded: %s", c.cmd, out)
	require.Equal(e.t, code, ce.Code, "%s: %v", c.cmd, ce)
	return ce
}

// testNetns makes a network namespace for the test and returns it with a
// path other processes can open.
func testNetns(t *testing.T) (ns.NetNS, string) {
	t.Helper()
	testenv.NeedRoot(t)
	n, err := ns.TempNetNS()
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })
	return n, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.Fd())
}

// fakeLink makes in n the interface the instance would have made for the
// first interface of ep: its MAC, address and default route. It is one end
// of a veth pair whose other end (ifname+"p") stays in n.
func fakeLink(t *testing.T, n ns.NetNS, ifname string, ep live.EndpointInfo) {
	t.Helper()
	require.NoError(t, n.Do(func(ns.NetNS) error {
		mac, err := net.ParseMAC(ep.Interfaces[0].MAC)
		if err != nil {
			return err
		}
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifname, HardwareAddr: mac}, PeerName: ifname + "p"}
		if err := netlink.LinkAdd(l); err != nil {
			return err
		}
		for _, name := range []string{ifname, ifname + "p"} {
			if err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
				return err
			}
		}
		addr, err := netlink.ParseAddr(ep.Interfaces[0].IP)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(ep.Interfaces[0].Gateway)})
	}))
}

// linkExists reports whether n has an interface named ifname.
func linkExists(t *testing.T, n ns.NetNS, ifname string) bool {
	var found bool
	require.NoError(t, n.Do(func(ns.NetNS) error {
		_, err := netlink.LinkByName(ifname)
		found = err == nil
		return nil
	}))
	return found
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	out := e.mustRun(call{cmd: "VERSION", conf: e.conf("1.1.0", nil)})
	info, err := (&cniversion.PluginDecoder{}).Decode(out)
	require.NoError(t, err)
	require.Equal(t, []string{"0.4.0", "1.0.0", "1.1.0"}, info.SupportedVersions())
	e.requireCode(call{cmd: "ADD", containerID: "c1", netns: "/proc/self/ns/net", ifname: "eth0", conf: e.conf("0.3.1", nil)}, types.ErrIncompatibleCNIVersion)
}

// TestAddResultVersions runs ADD with each accepted cniVersion and parses
// the result with the CNI library's own types for that version.
func TestAddResultVersions(t *testing.T) {
	_, path := testNetns(t)
	e := newEnv(t)
	for i, ver := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		id := fmt.Sprintf("container%d-0123456789", i)
		out := e.mustRun(call{cmd: "ADD", containerID: id, netns: path, ifname: "eth0", conf: e.conf(ver, nil)})
		ip := fmt.Sprintf("172.20.0.%d", i+2)
		mac := fmt.Sprintf("02:42:ac:14:00:%02x", i+2)

		req := e.daemon.lastRequest(t)
		require.Equal(t, attachRequest{Network: "front", NetnsPath: path, Ifname: "eth0", ContainerID: id}, req)

		generic, err := cniversion.NewResult(ver, out)
		require.NoError(t, err, "%s", out)
		require.Equal(t, ver, generic.Version())
		var raw map[string]any
		require.NoError(t, json.Unmarshal(out, &raw))
		require.Equal(t, ver, raw["cniVersion"], "%s", out)

		if ver == "0.4.0" {
			r, err := types040.NewResult(out)
			require.NoError(t, err)
			res := r.(*types040.Result)
			require.Len(t, res.Interfaces, 1)
			require.Equal(t, types040.Interface{Name: "eth0", Mac: mac, Sandbox: path}, *res.Interfaces[0])
			require.Len(t, res.IPs, 1)
			require.Equal(t, "4", res.IPs[0].Version)
			require.Equal(t, ip+"/24", res.IPs[0].Address.String())
			require.Equal(t, "172.20.0.1", res.IPs[0].Gateway.String())
			require.Equal(t, 0, *res.IPs[0].Interface)
			require.Len(t, res.Routes, 1)
			require.Equal(t, "0.0.0.0/0", res.Routes[0].Dst.String())
			require.Equal(t, "172.20.0.1", res.Routes[0].GW.String())
			require.Equal(t, []string{"172.20.0.1"}, res.DNS.Nameservers)
			continue
		}
		r, err := types100.NewResult(out)
		require.NoError(t, err)
		require.Equal(t, ver, r.Version())
		res, err := types100.GetResult(r)
		require.NoError(t, err)
		want := types100.Interface{Name: "eth0", Mac: mac, Sandbox: path}
		if ver == "1.1.0" {
			want.Mtu = 1500
		}
		require.Len(t, res.Interfaces, 1)
		require.Equal(t, want, *res.Interfaces[0])
		require.Len(t, res.IPs, 1)
		require.Equal(t, ip+"/24", res.IPs[0].Address.String())
		require.Equal(t, "172.20.0.1", res.IPs[0].Gateway.String())
		require.Equal(t, 0, *res.IPs[0].Interface)
		require.Len(t, res.Routes, 1)
		require.Equal(t, "0.0.0.0/0", res.Routes[0].Dst.String())
		require.Equal(t, "172.20.0.1", res.Routes[0].GW.String())
		require.Equal(t, []string{"172.20.0.1"}, res.DNS.Nameservers)
	}

	// A network without dns: no dns in the result.
	out := e.mustRun(call{cmd: "ADD", containerID: "back1", netns: path, ifname: "eth1", conf: e.conf("1.1.0", map[string]any{"network": "back", "link": "veth"})})
	require.Equal(t, "veth", e.daemon.lastRequest(t).Link)
	require.NotContains(t, string(out), `"dns"`)
	res, err := types100.NewResult(out)
	require.NoError(t, err)
	require.Equal(t, "172.21.0.2/24", res.(*types100.Result).IPs[0].Address.String())
	require.Equal(t, 9000, res.(*types100.Result).Interfaces[0].Mtu)
}

func TestAddPortMappings(t *testing.T) {
	_, path := testNetns(t)
	e := newEnv(t)
	pm := func(m ...map[string]any) map[string]any {
		return map[string]any{
			"capabilities":  map[string]bool{"portMappings": true},
			"runtimeConfig": map[string]any{"portMappings": m},
		}
	}
	e.mustRun(call{cmd: "ADD", containerID: "pm1", netns: path, ifname: "eth0", conf: e.conf("1.1.0", pm(
		map[string]any{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
		map[string]any{"hostPort": 0, "containerPort": 53, "protocol": "udp"},
		map[string]any{"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "0.0.0.0"},
		map[string]any{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "::"},
		map[string]any{"hostPort": 9000, "containerPort": 9000},
	))})
	require.Equal(t, []string{"8080:80/tcp", "53/udp", "5353:53/udp", "9000:9000/tcp"}, e.daemon.lastRequest(t).Publish)

	ce := e.requireCode(call{cmd: "ADD", containerID: "pm2", netns: path, ifname: "eth0", conf: e.conf("1.1.0", pm(
		map[string]any{"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.1"},
	))}, types.ErrUnsupportedField)
	require.Contains(t, ce.Msg, "192.0.2.1")
	require.Len(t, e.daemon.endpointNames(), 1, "a refused ADD attaches nothing")
}

// TestAddErrors: bad configurations, a missing network and a netns that is
// not one are refused before anything is attached; an instance that is
// not running is "try again later".
func TestAddErrors(t *testing.T) {
	e := newEnv(t)
	notNetns := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notNetns, nil, 0o644))
	add := func(conf map[string]any, netns string) call {
		return call{cmd: "ADD", containerID: "bad1", netns: netns, ifname: "eth0", conf: conf}
	}
	ce := e.requireCode(add(e.conf("1.1.0", map[string]any{"network": nil}), "/proc/self/ns/net"), types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, `"network" is required`)
	ce = e.requireCode(add(e.conf("1.1.0", map[string]any{"instance": nil, "socket": nil}), "/proc/self/ns/net"), types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, `"instance"`)
	ce = e.requireCode(add(e.conf("1.1.0", map[string]any{"link": "macvlan"}), "/proc/self/ns/net"), types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, `"link" "macvlan"`)
	e.requireCode(add(e.conf("1.1.0", nil), notNetns), types.ErrInvalidNetNS)
	ce = e.requireCode(add(e.conf("1.1.0", nil), "/proc/self/ns/net"), types.ErrInvalidNetNS)
	require.Contains(t, ce.Msg, "the plugin's own network namespace")
	e.requireCode(add(e.conf("1.1.0", nil), filepath.Join(t.TempDir(), "gone")), types.ErrInvalidNetNS)
	ce = e.requireCode(add(e.conf("1.1.0", map[string]any{"network": 5}), "/proc/self/ns/net"), types.ErrDecodingFailure)
	require.Contains(t, ce.Details, "cannot unmarshal number")
	require.Empty(t, e.daemon.endpointNames())
}

// TestAddRefusals: with a valid netns, a missing network is refused, an
// instance that is not running is "try again later", and the instance's
// own refusal is passed on.
func TestAddRefusals(t *testing.T) {
	_, path := testNetns(t)
	e := newEnv(t)
	add := func(conf map[string]any, netns string) call {
		return call{cmd: "ADD", containerID: "bad1", netns: netns, ifname: "eth0", conf: conf}
	}
	ce := e.requireCode(add(e.conf("1.1.0", map[string]any{"network": "nope"}), path), types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, `no network "nope" (it has: front, back)`)

	// Not running: no socket, and a socket nothing listens on.
	ce = e.requireCode(add(e.conf("1.1.0", map[string]any{"socket": filepath.Join(t.TempDir(), "none.sock")}), path), types.ErrTryAgainLater)
	require.Contains(t, ce.Msg, "no uswitch instance is running")
	e.requireCode(add(e.conf("1.1.0", map[string]any{"socket": deadSocket(t)}), path), types.ErrTryAgainLater)

	// A refusal of the instance (a name that exists: the first 12
	// characters of the ID are the same) is reported with its message.
	e.mustRun(add(e.conf("1.1.0", nil), path))
	ce = e.requireCode(call{cmd: "ADD", containerID: "bad1", netns: path, ifname: "eth0", conf: e.conf("1.1.0", nil)}, types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, `endpoint "cni-bad1" exists`)
	require.Equal(t, []string{"cni-bad1"}, e.daemon.endpointNames())
}

// deadSocket is a unix socket path that refuses connections.
func deadSocket(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "dead.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	return p
}

// TestDel: DEL removes the attachment of that container and interface
// only, and succeeds again when repeated, without a netns, and when the
// instance is not running (then it deletes the interface in the netns).
func TestDel(t *testing.T) {
	e := newEnv(t)
	id := "0123456789abcdef"
	e.daemon.put(live.EndpointInfo{Name: "cni-0123456789ab", ContainerID: id, Interfaces: []live.InterfaceInfo{{Name: "eth0", Network: "front", IP: "172.20.0.2/24"}}})
	e.daemon.put(live.EndpointInfo{Name: "cni-0123456789ab/net1", ContainerID: id, Interfaces: []live.InterfaceInfo{{Name: "net1", Network: "front", IP: "172.20.0.3/24"}}})
	// The same first 12 characters, another container: a failed ADD's DEL
	// must not remove the first container's attachment.
	del := func(containerID, ifname, netns string, conf map[string]any) call {
		return call{cmd: "DEL", containerID: containerID, ifname: ifname, netns: netns, conf: conf}
	}
	e.mustRun(del(id+"99", "eth0", "", e.conf("1.1.0", nil)))
	require.Equal(t, []string{"cni-0123456789ab", "cni-0123456789ab/net1"}, e.daemon.endpointNames())

	gone := filepath.Join(t.TempDir(), "gone")
	e.mustRun(del(id, "net1", gone, e.conf("1.0.0", nil)))
	require.Equal(t, []string{"cni-0123456789ab"}, e.daemon.endpointNames())
	e.mustRun(del(id, "net1", gone, e.conf("1.0.0", nil)))
	e.mustRun(del(id, "eth0", "", e.conf("0.4.0", nil)))
	require.Empty(t, e.daemon.endpointNames())
	e.mustRun(del(id, "eth0", "", e.conf("0.4.0", nil)))

	// Not running, the netns gone or absent.
	down := e.conf("1.1.0", map[string]any{"socket": filepath.Join(t.TempDir(), "none.sock")})
	e.mustRun(del(id, "eth0", gone, down))
	e.mustRun(del(id, "eth0", "", down))
	e.mustRun(del(id, "eth0", "", e.conf("1.1.0", map[string]any{"socket": deadSocket(t)})))
}

// TestDelInstanceDown: with the instance not running, DEL deletes the
// interface in the netns, and only that one.
func TestDelInstanceDown(t *testing.T) {
	n, path := testNetns(t)
	e := newEnv(t)
	id := "0123456789abcdef"
	del := func(containerID, ifname, netns string, conf map[string]any) call {
		return call{cmd: "DEL", containerID: containerID, ifname: ifname, netns: netns, conf: conf}
	}
	down := e.conf("1.1.0", map[string]any{"socket": filepath.Join(t.TempDir(), "none.sock")})
	fakeLink(t, n, "eth0", live.EndpointInfo{Interfaces: []live.InterfaceInfo{{MAC: "02:42:ac:14:00:09", IP: "172.20.0.9/24", Gateway: "172.20.0.1"}}})
	fakeLink(t, n, "eth1", live.EndpointInfo{Interfaces: []live.InterfaceInfo{{MAC: "02:42:ac:15:00:09", IP: "172.21.0.9/24", Gateway: "172.21.0.1"}}})
	e.mustRun(del(id, "eth0", path, down))
	require.False(t, linkExists(t, n, "eth0"), "DEL with the instance down deletes the interface")
	require.True(t, linkExists(t, n, "eth1"), "and only that one")
	e.mustRun(del(id, "eth0", path, down))
}

// TestCheck: CHECK passes for an attachment as ADD made it and fails when
// the instance or the netns disagrees with prevResult.
func TestCheck(t *testing.T) {
	n, path := testNetns(t)
	e := newEnv(t)
	for _, ver := range []string{"0.4.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			id := "check-" + strings.ReplaceAll(ver, ".", "")
			ifname := "c" + strings.ReplaceAll(ver, ".", "")
			out := e.mustRun(call{cmd: "ADD", containerID: id, netns: path, ifname: ifname, conf: e.conf(ver, nil)})
			var prev map[string]any
			require.NoError(t, json.Unmarshal(out, &prev))
			check := func(conf map[string]any) call {
				return call{cmd: "CHECK", containerID: id, netns: path, ifname: ifname, conf: conf}
			}
			withPrev := e.conf(ver, map[string]any{"prevResult": prev})

			// The instance has it but the netns has no such interface.
			ce := e.requireCode(check(withPrev), types.ErrInternal)
			require.Contains(t, ce.Msg, "interface "+ifname)

			fakeLink(t, n, ifname, e.daemon.last())
			e.mustRun(check(withPrev))

			e.requireCode(check(e.conf(ver, nil)), types.ErrInvalidNetworkConfig) // no prevResult
			e.requireCode(check(e.conf(ver, map[string]any{"prevResult": prev, "network": "back"})), types.ErrInternal)
			e.requireCode(check(e.conf(ver, map[string]any{"prevResult": prev, "socket": deadSocket(t)})), types.ErrTryAgainLater)

			// prevResult disagrees with the instance.
			bad := func(edit func(r *types100.Result)) map[string]any {
				r, err := types100.NewResult(mustConvert(t, out, ver))
				require.NoError(t, err)
				res := r.(*types100.Result)
				edit(res)
				conv, err := res.GetAsVersion(ver)
				require.NoError(t, err)
				b, err := json.Marshal(conv)
				require.NoError(t, err)
				var m map[string]any
				require.NoError(t, json.Unmarshal(b, &m))
				return e.conf(ver, map[string]any{"prevResult": m})
			}
			ce = e.requireCode(check(bad(func(r *types100.Result) { r.IPs[0].Address.IP = net.ParseIP("172.20.0.200").To4() })), types.ErrInternal)
			require.Contains(t, ce.Msg, "172.20.0.200")
			ce = e.requireCode(check(bad(func(r *types100.Result) { r.Interfaces[0].Mac = "02:00:00:00:00:01" })), types.ErrInternal)
			require.Contains(t, ce.Msg, "02:00:00:00:00:01")

			// The instance lost it.
			require.Empty(t, e.mustRun(call{cmd: "DEL", containerID: id, netns: path, ifname: ifname, conf: e.conf(ver, nil)}))
			e.requireCode(check(withPrev), types.ErrUnknownContainer)
		})
	}
}

// mustConvert turns a result of version ver into a 1.1.0 one.
func mustConvert(t *testing.T, out []byte, ver string) []byte {
	r, err := cniversion.NewResult(ver, out)
	require.NoError(t, err)
	res, err := types100.GetResult(r)
	require.NoError(t, err)
	res.CNIVersion = "1.1.0"
	b, err := json.Marshal(res)
	require.NoError(t, err)
	return b
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	status := func(conf map[string]any) call { return call{cmd: "STATUS", conf: conf} }
	e.mustRun(status(e.conf("1.1.0", nil)))
	ce := e.requireCode(status(e.conf("1.1.0", map[string]any{"network": "nope"})), types.ErrPluginNotAvailable)
	require.Contains(t, ce.Msg, `no network "nope"`)
	ce = e.requireCode(status(e.conf("1.1.0", map[string]any{"socket": filepath.Join(t.TempDir(), "none.sock")})), types.ErrPluginNotAvailable)
	require.Contains(t, ce.Msg, "no uswitch instance is running")
	e.requireCode(status(e.conf("1.1.0", map[string]any{"socket": deadSocket(t)})), types.ErrPluginNotAvailable)
	e.requireCode(status(e.conf("1.0.0", nil)), types.ErrIncompatibleCNIVersion)
}

// TestGC removes the attachments to the network that the runtime does not
// list, and nothing else.
func TestGC(t *testing.T) {
	e := newEnv(t)
	put := func(name, id, ifname, nw string) {
		e.daemon.put(live.EndpointInfo{Name: name, ContainerID: id, Interfaces: []live.InterfaceInfo{{Name: ifname, Network: nw}}})
	}
	put("cni-a", "a", "eth0", "front")
	put("cni-b", "b", "eth0", "front")
	put("cni-c/net1", "c", "net1", "front")
	put("cni-d", "d", "eth0", "back")
	put("web", "", "eth0", "front")
	log := filepath.Join(t.TempDir(), "ipam.log")
	e.mustRun(call{cmd: "GC", conf: e.conf("1.1.0", map[string]any{
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "a", "ifname": "eth0"}, {"containerID": "c", "ifname": "eth0"}},
		"ipam":                      map[string]any{"type": "test-ipam", "log": log},
	})})
	require.Equal(t, []string{"cni-a", "cni-d", "web"}, e.daemon.endpointNames())
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Equal(t, "GC \n", string(b), "GC is delegated to the IPAM plugin")

	e.requireCode(call{cmd: "GC", conf: e.conf("1.1.0", map[string]any{"socket": deadSocket(t)})}, types.ErrTryAgainLater)
	e.requireCode(call{cmd: "GC", conf: e.conf("1.0.0", nil)}, types.ErrIncompatibleCNIVersion)
}

// TestIPAMDelegation: an ipam section is run as the bridge plugin runs it:
// its address is the endpoint's, its routes are added in the netns and to
// the result, its DNS settings are added to the result; DEL and CHECK are
// delegated too, and a failed ADD releases the address.
func TestIPAMDelegation(t *testing.T) {
	n, path := testNetns(t)
	e := newEnv(t)
	log := filepath.Join(t.TempDir(), "ipam.log")
	ipamConf := func(addr string) map[string]any {
		return map[string]any{"ipam": map[string]any{
			"type": "test-ipam", "address": addr, "gateway": "172.20.0.1",
			"routes": []string{"0.0.0.0/0", "10.99.0.0/16"}, "dns": []string{"192.0.2.53"}, "log": log,
		}}
	}
	// The fake instance makes no interface: make the one it would have.
	fakeLink(t, n, "eth0", live.EndpointInfo{Interfaces: []live.InterfaceInfo{{MAC: "02:42:ac:14:00:4d", IP: "172.20.0.77/24", Gateway: "172.20.0.1"}}})
	out := e.mustRun(call{cmd: "ADD", containerID: "ipam1", netns: path, ifname: "eth0", conf: e.conf("1.1.0", ipamConf("172.20.0.77/24"))})
	require.Equal(t, "172.20.0.77", e.daemon.lastRequest(t).IP)
	r, err := types100.NewResult(out)
	require.NoError(t, err)
	res := r.(*types100.Result)
	require.Equal(t, "172.20.0.77/24", res.IPs[0].Address.String())
	var routes []string
	for _, rt := range res.Routes {
		routes = append(routes, fmt.Sprintf("%s via %v", rt.Dst.String(), rt.GW))
	}
	require.Equal(t, []string{"0.0.0.0/0 via 172.20.0.1", "10.99.0.0/16 via <nil>"}, routes)
	require.Equal(t, []string{"172.20.0.1", "192.0.2.53"}, res.DNS.Nameservers)
	require.NoError(t, n.Do(func(ns.NetNS) error {
		got, err := netlink.RouteGet(net.ParseIP("10.99.1.1"))
		require.NoError(t, err)
		require.Equal(t, "172.20.0.1", got[0].Gw.String())
		return nil
	}))

	var prev map[string]any
	require.NoError(t, json.Unmarshal(out, &prev))
	withPrev := ipamConf("172.20.0.77/24")
	withPrev["prevResult"] = prev
	e.mustRun(call{cmd: "CHECK", containerID: "ipam1", netns: path, ifname: "eth0", conf: e.conf("1.1.0", withPrev)})

	// The address is taken: the instance refuses, the address is released.
	e.requireCode(call{cmd: "ADD", containerID: "ipam2", netns: path, ifname: "eth1", conf: e.conf("1.1.0", ipamConf("172.20.0.77/24"))}, types.ErrInvalidNetworkConfig)
	// IPv6 from IPAM is refused, and released.
	ce := e.requireCode(call{cmd: "ADD", containerID: "ipam3", netns: path, ifname: "eth1", conf: e.conf("1.1.0", ipamConf("fd00::5/64"))}, types.ErrInvalidNetworkConfig)
	require.Contains(t, ce.Msg, "exactly one IPv4 address")
	e.mustRun(call{cmd: "DEL", containerID: "ipam1", netns: path, ifname: "eth0", conf: e.conf("1.1.0", ipamConf("172.20.0.77/24"))})
	require.Empty(t, e.daemon.endpointNames())

	b, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Equal(t, "ADD ipam1\nCHECK ipam1\nADD ipam2\nDEL ipam2\nADD ipam3\nDEL ipam3\nDEL ipam1\n", string(b))
}
