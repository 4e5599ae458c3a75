package topo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-dev/uswitch/config"
)

// Tests that need no privileges.

func TestHostLinkName(t *testing.T) {
	seen := map[string]bool{}
	for _, inst := range []string{"lab", "a-very-long-instance-name", "x y/z:w"} {
		for _, port := range []string{"web", "web/eth1", "api", "up"} {
			n := HostLinkName(inst, port)
			if err := validIfname(n); err != nil {
				t.Errorf("HostLinkName(%q, %q) = %q: %v", inst, port, n, err)
			}
			if n != HostLinkName(inst, port) {
				t.Errorf("HostLinkName(%q, %q) is not deterministic", inst, port)
			}
			if n == inst+"-up" {
				t.Errorf("HostLinkName(%q, %q) = %q collides with the uplink", inst, port, n)
			}
			if seen[n] {
				t.Errorf("HostLinkName(%q, %q) = %q is not unique", inst, port, n)
			}
			seen[n] = true
		}
	}
	if n := HostLinkName("lab", "web"); !strings.HasPrefix(n, "lab-") || len(n) != 12 {
		t.Errorf("HostLinkName(lab, web) = %q, want lab-XXXXXXXX", n)
	}
}

func TestCheckPlan(t *testing.T) {
	good := func() *config.Plan {
		return &config.Plan{Name: "lab", Endpoints: []config.Endpoint{
			{Name: "c", Mode: config.ModeContainer, Container: "web", Netns: "web"},
			{Name: "web", Netns: "web", Mode: config.ModeBridge, Link: config.LinkVeth,
				Interfaces: []config.Interface{{Name: "eth0", Port: "web"}}},
			{Name: "h", Mode: config.ModeHost},
			{Name: "n", Netns: "n", Mode: config.ModeNone},
		}}
	}
	if err := checkPlan(good()); err != nil {
		t.Fatalf("good plan: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(p *config.Plan)
		want string
	}{
		"bad instance": {func(p *config.Plan) { p.Name = "../x" }, "instance name"},
		"bad netns":    {func(p *config.Plan) { p.Endpoints[1].Netns = "a/b" }, `endpoint "web": netns`},
		"dup netns":    {func(p *config.Plan) { p.Endpoints[3].Netns = "web" }, `is also endpoint "web"`},
		"bad target":   {func(p *config.Plan) { p.Endpoints[0].Container = "nope" }, "names no endpoint"},
		"bad mode":     {func(p *config.Plan) { p.Endpoints[3].Mode = "bogus" }, "unknown mode"},
		"bad link":     {func(p *config.Plan) { p.Endpoints[1].Link = "macvlan" }, "unknown link"},
		"bad ifname":   {func(p *config.Plan) { p.Endpoints[1].Interfaces[0].Name = "a-much-too-long-name" }, "invalid interface name"},
	} {
		p := good()
		tc.mod(p)
		err := checkPlan(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestHostsAndResolv(t *testing.T) {
	p := testPlanShape("lab", "10.1.0")
	p.Networks[0].DNS = true
	ep := &p.Endpoints[0]
	ep.Aliases = []string{"www"}
	h := hostsFile(ep)
	if !strings.HasPrefix(h, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n") ||
		!strings.HasSuffix(h, "10.1.0.10\t"+ep.Name+" www\n") {
		t.Errorf("hosts:\n%s", h)
	}
	if rc := resolvConf(p, ep); rc != "# written by uswitch\nnameserver 10.1.0.1\n" {
		t.Errorf("resolv.conf %q", rc)
	}
	p.Networks[0].DNS = false
	if rc := resolvConf(p, ep); strings.Contains(rc, "nameserver") {
		t.Errorf("resolv.conf without dns %q", rc)
	}
}

func TestStateFile(t *testing.T) {
	opt := Options{StateDir: t.TempDir()}
	if s, err := ReadState("lab", opt); s != nil || err != nil {
		t.Fatalf("no state: %v %v", s, err)
	}
	if err := Down("lab", opt); err != nil {
		t.Fatalf("Down without state: %v", err)
	}
	want := &State{Name: "lab", PID: 42, Netns: []string{"a"}, Links: []LinkRef{{Name: "lab-1"}},
		Files: []string{"/etc/netns/a/hosts"}, Dirs: []string{"/etc/netns/a"}}
	if err := writeState(StatePath("lab", opt), want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState("lab", opt)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Fatalf("read back %s, want %s", a, b)
	}
	if _, err := os.Stat(StatePath("lab", opt) + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary state file left behind: %v", err)
	}
	if StatePath("lab", Options{}) != "/run/uswitch/lab.json" {
		t.Fatalf("default state path %s", StatePath("lab", Options{}))
	}

	os.WriteFile(StatePath("bad", opt), []byte("{"), 0o644)
	if err := Down("bad", opt); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Fatalf("Down with a damaged state file: %v", err)
	}
}

// TestRecordGroupCommit: goroutines recording at once share state file
// writes, and each record returns only once the file holds its change; a
// failed write is returned to its writer and the changes it held are
// written by the next record.
func TestRecordGroupCommit(t *testing.T) {
	opt := Options{StateDir: t.TempDir()}
	tp := &Topology{Name: "lab", path: StatePath("lab", opt), st: State{Name: "lab"}}
	const n = 64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("ns%d", i)
			if err := tp.record(func(s *State) { s.Netns = append(s.Netns, name) }); err != nil {
				errs <- err
				return
			}
			s, err := ReadState("lab", opt)
			if err != nil {
				errs <- err
				return
			}
			if !slices.Contains(s.Netns, name) {
				errs <- fmt.Errorf("record of %s returned before the file held it", name)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, err := ReadState("lab", opt)
	if err != nil || len(s.Netns) != n {
		t.Fatalf("state file: %d namespaces, %v", len(s.Netns), err)
	}
	if tp.changes != n || tp.written != n {
		t.Fatalf("changes %d, written %d, want %d", tp.changes, tp.written, n)
	}

	// A write that fails (the state directory is a file) is the writer's
	// error; the next record writes both changes.
	bad := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tp.path = filepath.Join(bad, "lab.json")
	if err := tp.record(func(s *State) { s.Netns = append(s.Netns, "lost") }); err == nil {
		t.Fatal("record into a path under a file succeeded")
	}
	tp.path = StatePath("lab", opt)
	if err := tp.record(func(s *State) { s.Netns = append(s.Netns, "next") }); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadState("lab", opt); err != nil || !slices.Contains(s.Netns, "lost") || !slices.Contains(s.Netns, "next") {
		t.Fatalf("after a failed write: %v, %v", s, err)
	}
}

func TestTeardownOnlyRemovesEtcNetns(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "keep")
	os.WriteFile(victim, nil, 0o644)
	for _, p := range []string{victim, "/etc/netns/../passwd", "/etc/netnsx/y"} {
		err := teardown(&State{Files: []string{p}, Dirs: []string{p}})
		if err == nil || !strings.Contains(err.Error(), "not removed") {
			t.Errorf("teardown of %q: %v", p, err)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("teardown removed a file outside /etc/netns: %v", err)
	}
}
