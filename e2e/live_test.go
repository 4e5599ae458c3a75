package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/live"
	"github.com/uswitch-dev/uswitch/topo"
)

// liveConfig: one network, front, with a and b (the transfer's ends), and
// an uplink whose host side is a namespace of the test's.
func liveConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.0.2/30"
host_address = "10.253.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.91.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "front"
ip = "10.91.0.2"

[[endpoint]]
name = "%[1]s-b"
network = "front"
link = "veth"
`, name)
}

// steadyTransfer streams random bytes from ns src to dst:port until stop is
// closed, then closes; it returns a channel that receives nil once the
// receiver got exactly what was sent (the same sha256), or an error.
func steadyTransfer(t *testing.T, src, dst, dstIP string, stop <-chan struct{}) <-chan error {
	t.Helper()
	l := listen(t, dst, dstIP+":5201")
	got := make(chan [32]byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		_, _ = io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	c := dial(t, src, dstIP+":5201")
	done := make(chan error, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 64<<10)
		sent := 0
		for {
			select {
			case <-stop:
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					done <- err
					return
				}
				select {
				case sum := <-got:
					if sum != [32]byte(h.Sum(nil)) {
						done <- fmt.Errorf("received bytes differ from the %d sent", sent)
						return
					}
					if sent < 1<<20 {
						done <- fmt.Errorf("only %d bytes went through", sent)
						return
					}
					done <- nil
				case <-time.After(30 * time.Second):
					done <- fmt.Errorf("receiver did not finish")
				}
				return
			default:
			}
			rand.Read(buf)
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Write(buf)
			h.Write(buf[:n])
			sent += n
			if err != nil {
				done <- fmt.Errorf("send after %d bytes: %w", sent, err)
				return
			}
			time.Sleep(time.Millisecond) // a steady stream, not a flood
		}
	}()
	return done
}

// echoServer accepts connections in ns on addr and writes back what it reads.
func echoServer(t *testing.T, ns, addr string) {
	t.Helper()
	l := listen(t, ns, addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// tcpEcho dials addr from ns, sends a line and requires it back.
func tcpEcho(t *testing.T, ns, addr string) {
	t.Helper()
	c := dial(t, ns, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Write([]byte("hello\n"))
	require.NoError(t, err)
	b := make([]byte, 6)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err, "echo %s from %s", addr, ns)
	require.Equal(t, "hello\n", string(b))
}

// api returns a control client of the instance.
func (in *instance) api() *control.Client {
	return control.NewClient("/run/uswitch/" + in.name + ".sock")
}

// endpoints lists the instance's endpoints by name.
func (in *instance) endpoints(t *testing.T) map[string]live.EndpointInfo {
	t.Helper()
	var list []live.EndpointInfo
	require.NoError(t, in.api().GetJSON(context.Background(), "/v1/endpoints", &list))
	out := map[string]live.EndpointInfo{}
	for _, e := range list {
		out[e.Name] = e
	}
	return out
}

func ipOf(e live.EndpointInfo) string { return strings.Split(e.Interfaces[0].IP, "/")[0] }

func TestLiveEndpointsWhileTransfer(t *testing.T) {
	needRoot(t)
	name := prefix("lv")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	eps := in.endpoints(t)
	a, b := name+"-a", name+"-b"
	stop := make(chan struct{})
	done := steadyTransfer(t, a, b, ipOf(eps[b]), stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
		}
	}()

	c, d := name+"-c", name+"-d"
	out, err := in.cli("endpoint", "add", c, "--network", "front", "--alias", "cee")
	require.NoError(t, err)
	require.Contains(t, out, c)
	require.Contains(t, out, "10.91.0.4/24", "the lowest free address")
	out, err = in.cli("endpoint", "add", d, "--network", "front", "--link", "veth", "--publish", "8088:80/tcp")
	require.NoError(t, err)
	require.Contains(t, out, "8088:80/tcp")

	// What run makes for an endpoint, the add made.
	require.True(t, netnsExists(c))
	hosts, err := os.ReadFile(filepath.Join("/etc/netns", c, "hosts"))
	require.NoError(t, err)
	require.Contains(t, string(hosts), "10.91.0.4\t"+c+" cee")
	echoServer(t, a, "0.0.0.0:7")
	tcpEcho(t, c, ipOf(eps[a])+":7")
	tcpEcho(t, d, ipOf(eps[a])+":7")
	// DNS names of the new endpoint, from an old one.
	out, err = nsExec(a, "getent", "hosts", "cee")
	require.NoError(t, err, out)
	require.Contains(t, out, "10.91.0.4")
	// The published port of the new endpoint: DNAT from the host side, and
	// the userland proxy.
	echoServer(t, d, "0.0.0.0:80")
	tcpEcho(t, name+"-host", "10.253.0.2:8088")
	tcpEcho(t, name+"-host", "127.0.0.1:8088")

	// Remove them: namespace, files, port, DNS name, listener all go.
	_, err = in.cli("endpoint", "rm", c)
	require.NoError(t, err)
	_, err = in.cli("endpoint", "rm", d)
	require.NoError(t, err)
	require.False(t, netnsExists(c))
	require.False(t, netnsExists(d))
	_, err = os.Stat(filepath.Join("/etc/netns", c))
	require.True(t, os.IsNotExist(err), "/etc/netns/%s left behind", c)
	for _, p := range in.ports(t) {
		require.NotEqual(t, c, p.Name)
		require.NotEqual(t, d, p.Name)
	}
	out, _ = nsExec(a, "getent", "hosts", "cee")
	require.NotContains(t, out, "10.91.0.4")
	inNetns(t, name+"-host", func() {
		_, err := net.DialTimeout("tcp4", "127.0.0.1:8088", time.Second)
		require.Error(t, err, "the proxy listener is gone")
	})
	_, err = in.cli("endpoint", "rm", c)
	require.ErrorContains(t, err, fmt.Sprintf("no endpoint %q", c))

	close(stop)
	stopped = true
	select {
	case err := <-done:
		require.NoError(t, err, "the transfer between a and b went on through the changes")
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish")
	}
}

func TestLiveRefusedCreatesNothing(t *testing.T) {
	needRoot(t)
	name := prefix("lr")
	cfg := writeConfig(t, liveConfig(name))
	in := start(t, name, cfg)
	x := name + "-x"
	// The same message as check's for the same file.
	bad := writeConfig(t, liveConfig(name)+fmt.Sprintf("\n[[endpoint]]\nname = %q\nnetwork = \"front\"\nip = \"10.91.0.2\"\n", x))
	chk, err := exec.Command(binary, "check", "--config", bad).CombinedOutput()
	require.Error(t, err)
	want := fmt.Sprintf("endpoint %q: ip 10.91.0.2 is already taken by endpoint %q", x, name+"-a")
	require.Contains(t, string(chk), want)
	_, err = in.cli("endpoint", "add", x, "--network", "front", "--ip", "10.91.0.2")
	require.ErrorContains(t, err, want)
	_, err = in.cli("endpoint", "add", x, "--network", "nope")
	require.ErrorContains(t, err, `network "nope" does not exist`)
	_, err = in.cli("endpoint", "add", x, "--network", "front", "--publish", "80:80/sctp")
	require.ErrorContains(t, err, `protocol "sctp" is not tcp or udp`)
	require.False(t, netnsExists(x))
	_, err = os.Stat(filepath.Join("/etc/netns", x))
	require.True(t, os.IsNotExist(err))
	require.Len(t, in.endpoints(t), 2)

	// The API's errors are JSON with a 4xx status.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/endpoints", `{"name":"` + x + `","network":"front","ip":"10.91.0.2"}`, 400},
		{"POST", "/v1/endpoints", `{"name":"` + x + `","network":"front","bogus":1}`, 400},
		{"POST", "/v1/endpoints", `{"name":"` + name + `-a","network":"front"}`, 409},
		{"POST", "/v1/endpoints", `not json`, 400},
		{"DELETE", "/v1/endpoints/" + x, ``, 404},
		{"DELETE", "/v1/networks/front", ``, 409},
		{"POST", "/v1/networks", `{"name":"n2","subnet":"10.91.0.0/25"}`, 400},
		{"POST", "/v1/endpoints", `{"netns_path":"/var/run/netns/` + x + `-none","container_id":"abc","network":"front"}`, 400},
		{"POST", "/v1/endpoints", `{"name":"` + x + `","network":"front","ifname":"eth1"}`, 400},
	} {
		status, body := rawRequest(t, in, c.method, c.path, c.body)
		require.Equal(t, c.status, status, "%s %s %s: %s", c.method, c.path, c.body, body)
		var eb struct {
			Error string `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
		require.NotEmpty(t, eb.Error)
	}
}

// rawRequest sends a request to the instance's control socket and returns
// the status and body.
func rawRequest(t *testing.T, in *instance, method, path, body string) (int, string) {
	t.Helper()
	sock := "/run/uswitch/" + in.name + ".sock"
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequest(method, "http://uswitch"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestLiveNetworkAddRemove(t *testing.T) {
	needRoot(t)
	name := prefix("ln")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	out, err := in.cli("network", "add", "back", "--subnet", "10.92.0.0/24", "--isolate=false")
	require.NoError(t, err)
	require.Contains(t, out, "10.92.0.1")
	e := name + "-e"
	_, err = in.cli("endpoint", "add", e, "--network", "back")
	require.NoError(t, err)
	// The host reaches it through the uplink route made for the new network,
	// and a (not isolated) network routes to it.
	echoServer(t, e, "0.0.0.0:7")
	tcpEcho(t, name+"-host", "10.92.0.2:7")
	_, err = in.cli("network", "rm", "back")
	require.ErrorContains(t, err, "still has endpoints")
	_, err = in.cli("endpoint", "rm", e)
	require.NoError(t, err)
	_, err = in.cli("network", "rm", "back")
	require.NoError(t, err)
	out, err = nsExec(name+"-host", "ip", "route")
	require.NoError(t, err)
	require.NotContains(t, out, "10.92.0.0/24")
	for _, p := range in.ports(t) {
		require.NotEqual(t, "gw/back", p.Name)
	}
}

func TestLiveParallelAdds(t *testing.T) {
	needRoot(t)
	name := prefix("lp")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	const n = 20
	var wg sync.WaitGroup
	infos := make([]live.EndpointInfo, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("%s-p%d", name, i), "network": "front"})
			errs[i] = in.api().Post(context.Background(), "/v1/endpoints", "application/json", body, &infos[i])
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i := range n {
		require.NoError(t, errs[i])
		ip := infos[i].Interfaces[0].IP
		require.NotContains(t, seen, ip, "%s and %s got the same address", seen[ip], infos[i].Name)
		seen[ip] = infos[i].Name
		require.True(t, netnsExists(infos[i].Name))
	}
	require.Len(t, in.endpoints(t), n+2)
	echoServer(t, name+"-a", "0.0.0.0:7")
	tcpEcho(t, infos[n-1].Name, "10.91.0.2:7")
}

func TestLiveAttachment(t *testing.T) {
	needRoot(t)
	name := prefix("la")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	ctr := name + "-ctr"
	out, err := exec.Command("ip", "netns", "add", ctr).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ctr).Run() })

	id := "0123456789abcdef0123"
	for _, ifname := range []string{"eth0", "net1"} {
		req := map[string]any{"netns_path": "/var/run/netns/" + ctr, "ifname": ifname, "container_id": id, "network": "front"}
		if ifname == "eth0" {
			req["publish"] = []string{"8090:80/tcp"}
		}
		body, _ := json.Marshal(req)
		var info live.EndpointInfo
		require.NoError(t, in.api().Post(context.Background(), "/v1/endpoints", "application/json", body, &info))
		want := "cni-0123456789ab"
		if ifname != "eth0" {
			want += "/" + ifname
		}
		require.Equal(t, want, info.Name)
		require.Equal(t, "/var/run/netns/"+ctr, info.NetnsPath)
		require.Equal(t, id, info.ContainerID)
		require.Len(t, info.Interfaces, 1)
		require.Equal(t, ifname, info.Interfaces[0].Name)
		require.Equal(t, want, info.Interfaces[0].Port)
		require.Equal(t, "10.91.0.1", info.Interfaces[0].Gateway)
		require.Equal(t, []string{"10.91.0.1"}, info.DNS)
		out, err := nsExec(ctr, "ip", "-o", "addr", "show", "dev", ifname)
		require.NoError(t, err, out)
		require.Contains(t, out, info.Interfaces[0].IP)
	}
	routes, err := nsExec(ctr, "ip", "route", "show", "default")
	require.NoError(t, err)
	require.Contains(t, routes, "via 10.91.0.1 dev eth0")
	// Traffic both ways, and the attachment's published port.
	echoServer(t, name+"-a", "0.0.0.0:7")
	tcpEcho(t, ctr, "10.91.0.2:7")
	echoServer(t, ctr, "0.0.0.0:80")
	tcpEcho(t, name+"-b", "10.91.0.4:80")
	tcpEcho(t, name+"-host", "10.253.0.2:8090")
	_, err = os.Stat(filepath.Join("/etc/netns", ctr))
	require.True(t, os.IsNotExist(err), "no /etc/netns files for an attachment")

	// DELETE with the name path-escaped; again: 404.
	require.NoError(t, in.api().Delete(context.Background(), "/v1/endpoints/"+url.PathEscape("cni-0123456789ab/net1")))
	links, _ := nsExec(ctr, "ip", "link", "show", "net1")
	require.Contains(t, links, "does not exist", "net1 is gone")
	status, _ := rawRequest(t, in, "DELETE", "/v1/endpoints/"+url.PathEscape("cni-0123456789ab/net1"), "")
	require.Equal(t, 404, status)
	// The namespace goes first (the runtime deleted it): the delete still
	// removes our side.
	require.NoError(t, exec.Command("ip", "netns", "del", ctr).Run())
	require.NoError(t, in.api().Delete(context.Background(), "/v1/endpoints/cni-0123456789ab"))
	require.Len(t, in.endpoints(t), 2)
	for _, p := range in.ports(t) {
		require.False(t, strings.HasPrefix(p.Name, "cni-"), p.Name)
	}
}

// liveConfigPlus is liveConfig with an endpoint e that the applied files
// drop.
func liveConfigPlus(name string) string {
	return liveConfig(name) + fmt.Sprintf(`
[[endpoint]]
name = "%[1]s-e"
network = "front"
`, name)
}

// applied is the file TestLiveApply applies: network back with c, d on
// front, a publishing 8089, e gone.
func applied(name string) string {
	return strings.Replace(liveConfig(name), `ip = "10.91.0.2"`, "ip = \"10.91.0.2\"\npublish = [\"8089:7/tcp\"]", 1) + fmt.Sprintf(`
[[network]]
name = "back"
subnet = "10.93.0.0/24"

[[endpoint]]
name = "%[1]s-c"
network = "back"

[[endpoint]]
name = "%[1]s-d"
network = "front"
`, name)
}

func TestLiveApply(t *testing.T) {
	needRoot(t)
	name := prefix("lx")
	in := start(t, name, writeConfig(t, liveConfigPlus(name)))
	a, b, c, d, e := name+"-a", name+"-b", name+"-c", name+"-d", name+"-e"
	stop := make(chan struct{})
	done := steadyTransfer(t, a, b, "10.91.0.3", stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
		}
	}()
	require.True(t, netnsExists(e))

	// A refused file changes nothing, and says where.
	bad := writeConfig(t, applied(name)+"\n[[network]]\nname = \"dup\"\nsubnet = \"10.93.0.0/25\"\n")
	out, err := exec.Command(binary, "apply", "--config", bad).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "overlaps")
	status, body := rawRequest(t, in, "POST", "/v1/apply", applied(name)+"\n[[network]]\nname = \"dup\"\nsubnet = \"10.93.0.0/25\"\n")
	require.Equal(t, 400, status)
	var eb struct {
		Error string `json:"error"`
		Line  int    `json:"line"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &eb))
	require.Contains(t, eb.Error, `network "dup": subnet 10.93.0.0/25 overlaps network "back"`)
	require.Equal(t, 38, eb.Line, "the line of the subnet, as check says")
	status, body = rawRequest(t, in, "POST", "/v1/apply", strings.ReplaceAll(liveConfig(name), "10.253.0.", "10.254.0."))
	require.Equal(t, 400, status)
	require.Contains(t, body, "uplink.address cannot change while the instance runs")
	require.False(t, netnsExists(c))
	require.True(t, netnsExists(e))

	out, err = exec.Command(binary, "apply", "--config", writeConfig(t, applied(name))).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "+ network back\n- endpoint "+e+"\n~ endpoint "+a+" (publish)\n+ endpoint "+c+"\n+ endpoint "+d+"\n", string(out))
	require.False(t, netnsExists(e))
	require.True(t, netnsExists(c))
	echoServer(t, c, "0.0.0.0:7")
	tcpEcho(t, name+"-host", "10.93.0.2:7")
	echoServer(t, a, "0.0.0.0:7")
	tcpEcho(t, name+"-host", "10.253.0.2:8089") // a's new published port
	tcpEcho(t, name+"-host", "127.0.0.1:8089")
	tcpEcho(t, d, "10.91.0.2:7")
	// Applying it again changes nothing.
	out, err = exec.Command(binary, "apply", "--config", writeConfig(t, applied(name)), "-o", "json").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "[]\n", string(out))

	close(stop)
	stopped = true
	select {
	case err := <-done:
		require.NoError(t, err, "the transfer between a and b went on through the apply")
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish")
	}
}

func TestLiveSIGHUP(t *testing.T) {
	needRoot(t)
	name := prefix("lh")
	cfg := writeConfig(t, liveConfigPlus(name))
	in := start(t, name, cfg)
	require.NoError(t, os.WriteFile(cfg, []byte(applied(name)), 0o644))
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		eps := in.endpoints(t)
		_, c := eps[name+"-c"]
		_, e := eps[name+"-e"]
		return c && !e
	}, 30*time.Second, 50*time.Millisecond)
	require.True(t, netnsExists(name+"-c"))
	require.False(t, netnsExists(name+"-e"))
	require.Eventually(t, func() bool { return strings.Contains(in.stderr.String(), "SIGHUP: config applied") }, 10*time.Second, 20*time.Millisecond)
}

func TestLiveKillDuringApply(t *testing.T) {
	needRoot(t)
	name := prefix("lk")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	big := liveConfig(name)
	for i := range 40 {
		big += fmt.Sprintf("\n[[endpoint]]\nname = \"%s-k%d\"\nnetwork = \"front\"\nlink = %q\n", name, i, []string{"tap", "veth"}[i%2])
	}
	apply := exec.Command(binary, "apply", "--config", writeConfig(t, big))
	require.NoError(t, apply.Start())
	require.Eventually(t, func() bool { return netnsExists(name + "-k3") }, 30*time.Second, time.Millisecond)
	in.kill()
	apply.Wait()
	require.False(t, netnsExists(name+"-k39"), "the apply was cut short")
	out, err := exec.Command(binary, "down", "--config", in.config).CombinedOutput()
	require.NoError(t, err, string(out))
	ents, err := os.ReadDir("/var/run/netns")
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), name), "netns %s left behind", e.Name())
	}
	require.Empty(t, linksWithPrefix(t, name))
	dirs, _ := filepath.Glob(filepath.Join("/etc/netns", name+"*"))
	require.Empty(t, dirs)
	_, err = os.Stat(filepath.Join("/run/uswitch", name+".json"))
	require.True(t, os.IsNotExist(err), "state file left behind")
}

// ifindex returns the index of link dev in namespace ns ("" when absent).
func ifindex(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := nsExec(ns, "cat", "/sys/class/net/"+dev+"/ifindex")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// attach adds an attachment of container id to front in the named
// namespace through the API.
func attach(t *testing.T, in *instance, ns, id, link string) live.EndpointInfo {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"netns_path": "/var/run/netns/" + ns, "container_id": id, "network": "front", "link": link})
	var info live.EndpointInfo
	require.NoError(t, in.api().Post(context.Background(), "/v1/endpoints", "application/json", body, &info))
	return info
}

// testNetns makes a namespace of the test's own (a container runtime's).
func testNetns(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
}

func TestLiveRestartAfterKill9(t *testing.T) {
	needRoot(t)
	name := prefix("lk9")
	cfg := writeConfig(t, liveConfig(name))
	first := start(t, name, cfg)
	ctr, x, a := name+"-ctr", name+"-x", name+"-a"
	testNetns(t, ctr)
	att := attach(t, first, ctr, "feedfacecafe0001", "tap")
	_, err := first.cli("endpoint", "add", x, "--network", "front", "--publish", "8091:7/tcp")
	require.NoError(t, err)
	before := first.endpoints(t)
	idx := map[string]string{ctr: ifindex(t, ctr, "eth0"), x: ifindex(t, x, "eth0"), a: ifindex(t, a, "eth0")}
	// A connection from the attachment to a, open across the restart.
	echoServer(t, a, "0.0.0.0:7")
	conn := dial(t, ctr, "10.91.0.2:7")
	roundTrip := func() {
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		_, err := conn.Write([]byte("ping\n"))
		require.NoError(t, err)
		b := make([]byte, 5)
		_, err = io.ReadFull(conn, b)
		require.NoError(t, err)
		require.Equal(t, "ping\n", string(b))
	}
	roundTrip()

	first.kill()
	second := start(t, name, cfg)
	after := second.endpoints(t)
	for _, n := range []string{att.Name, x, a} {
		require.Contains(t, after, n)
		require.Equal(t, before[n].Interfaces, after[n].Interfaces, "%s: same port, IP and MAC", n)
		require.Equal(t, before[n].Publish, after[n].Publish, n)
	}
	for ns, i := range idx {
		require.Equal(t, i, ifindex(t, ns, "eth0"), "%s's eth0 was not recreated", ns)
	}
	roundTrip() // the same connection, through the new process
	echoServer(t, x, "0.0.0.0:7")
	tcpEcho(t, ctr, ipOf(after[x])+":7")
	tcpEcho(t, name+"-host", "10.253.0.2:8091")

	// down after the second run's stop removes the attachment's TAP too.
	require.NoError(t, second.stop())
	require.NotEmpty(t, ifindex(t, ctr, "eth0"), "a stop leaves the attachment")
	out, err := exec.Command(binary, "down", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Empty(t, ifindex(t, ctr, "eth0"), "down removes the attachment's TAP")
	require.False(t, netnsExists(x))
}

func TestLiveRestartKeepsAttachments(t *testing.T) {
	needRoot(t)
	name := prefix("lrs")
	cfg := writeConfig(t, liveConfig(name))
	first := start(t, name, cfg)
	ctr, ctr2 := name+"-ctr", name+"-ctr2"
	testNetns(t, ctr)
	testNetns(t, ctr2)
	tapAtt := attach(t, first, ctr, "0000aaaa1111", "tap")
	vethAtt := attach(t, first, ctr2, "0000bbbb2222", "veth")
	idx, idx2 := ifindex(t, ctr, "eth0"), ifindex(t, ctr2, "eth0")

	require.NoError(t, first.stop())
	require.False(t, netnsExists(name+"-a"), "SIGTERM removes what run made")
	require.Equal(t, idx, ifindex(t, ctr, "eth0"), "but leaves the attachments")
	require.Equal(t, idx2, ifindex(t, ctr2, "eth0"))
	require.NotEmpty(t, linksWithPrefix(t, topo.HostLinkName(name, vethAtt.Name)), "the veth's host end stays")

	second := start(t, name, cfg)
	after := second.endpoints(t)
	require.Equal(t, tapAtt.Interfaces, after[tapAtt.Name].Interfaces)
	require.Equal(t, vethAtt.Interfaces, after[vethAtt.Name].Interfaces)
	require.Equal(t, idx, ifindex(t, ctr, "eth0"))
	require.Equal(t, idx2, ifindex(t, ctr2, "eth0"))
	echoServer(t, ctr2, "0.0.0.0:7")
	tcpEcho(t, ctr, ipOf(after[vethAtt.Name])+":7")
	echoServer(t, name+"-a", "0.0.0.0:7")
	tcpEcho(t, ctr2, "10.91.0.2:7")

	// DELETE removes the attachment's TAP from the namespace.
	require.NoError(t, second.api().Delete(context.Background(), "/v1/endpoints/"+tapAtt.Name))
	require.Empty(t, ifindex(t, ctr, "eth0"))
	require.NoError(t, second.stop())
	out, err := exec.Command(binary, "down", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Empty(t, ifindex(t, ctr2, "eth0"), "down removes the veth attachment")
	require.Empty(t, linksWithPrefix(t, topo.HostLinkName(name, vethAtt.Name)))
}

// TestLiveRunAfterKillDuringApply: a run after a kill -9 in the middle of
// an apply keeps the endpoints that were complete (re-attached) and
// removes the one that was half made: every namespace left is an endpoint
// it runs, and each answers.
func TestLiveRunAfterKillDuringApply(t *testing.T) {
	needRoot(t)
	name := prefix("lq")
	cfg := writeConfig(t, liveConfig(name))
	first := start(t, name, cfg)
	big := liveConfig(name)
	for i := range 40 {
		big += fmt.Sprintf("\n[[endpoint]]\nname = \"%s-k%d\"\nnetwork = \"front\"\n", name, i)
	}
	apply := exec.Command(binary, "apply", "--config", writeConfig(t, big))
	require.NoError(t, apply.Start())
	require.Eventually(t, func() bool { return netnsExists(name + "-k5") }, 30*time.Second, time.Millisecond)
	first.kill()
	apply.Wait()

	second := start(t, name, cfg)
	eps := second.endpoints(t)
	require.Contains(t, eps, name+"-k4", "a complete endpoint is re-attached")
	ents, err := os.ReadDir("/var/run/netns")
	require.NoError(t, err)
	echoServer(t, name+"-a", "0.0.0.0:7")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), name+"-k") {
			continue
		}
		require.Contains(t, eps, e.Name(), "netns %s is an endpoint of the run, or gone", e.Name())
		tcpEcho(t, e.Name(), "10.91.0.2:7")
	}
	for n := range eps {
		require.True(t, n == name+"-a" || n == name+"-b" || netnsExists(n), n)
	}
	require.NoError(t, second.stop())
	out, err := exec.Command(binary, "down", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	dirs, _ := filepath.Glob(filepath.Join("/var/run/netns", name+"*"))
	require.Empty(t, dirs)
}

// TestLiveApplyNetworkInPlace: a network's flags change without touching
// its endpoints: names, rules and resolv.conf follow.
func TestLiveApplyNetworkInPlace(t *testing.T) {
	needRoot(t)
	name := prefix("lw")
	in := start(t, name, writeConfig(t, liveConfig(name)))
	a := name + "-a"
	idx := ifindex(t, a, "eth0")
	resolv, err := os.ReadFile(filepath.Join("/etc/netns", a, "resolv.conf"))
	require.NoError(t, err)
	require.Contains(t, string(resolv), "nameserver 10.91.0.1")
	next := strings.Replace(liveConfig(name), "subnet = \"10.91.0.0/24\"", "subnet = \"10.91.0.0/24\"\ndns = false", 1)
	out, err := exec.Command(binary, "apply", "--config", writeConfig(t, next)).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "~ network front (dns)\n", string(out))
	require.Equal(t, idx, ifindex(t, a, "eth0"), "not recreated")
	resolv, err = os.ReadFile(filepath.Join("/etc/netns", a, "resolv.conf"))
	require.NoError(t, err)
	require.NotContains(t, string(resolv), "nameserver")
	require.Nil(t, in.endpoints(t)[a].DNS)
}
