package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/live"
)

// fakeDaemon is a control API server with the endpoint and network calls of
// a running instance, over a unix socket, keeping endpoints in memory.
type fakeDaemon struct {
	socket string

	mu       sync.Mutex
	eps      []live.EndpointInfo
	requests []attachRequest // every POST /v1/endpoints body
	deleted  []string        // every DELETE that found its endpoint
}

// fakeNetworks are the networks the fake instance has.
var fakeNetworks = []live.NetworkInfo{
	{Name: "front", Subnet: "172.20.0.0/24", Gateway: "172.20.0.1", DNS: true, MTU: 1500},
	{Name: "back", Subnet: "172.21.0.0/24", Gateway: "172.21.0.1", MTU: 9000},
}

// newFakeDaemon serves the fake API on a socket in the test's temp dir.
func newFakeDaemon(t *testing.T) *fakeDaemon {
	f := &fakeDaemon{socket: filepath.Join(t.TempDir(), "lab.sock")}
	l, err := net.Listen("unix", f.socket)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, fakeNetworks) })
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, http.StatusOK, append([]live.EndpointInfo{}, f.eps...))
	})
	mux.HandleFunc("POST /v1/endpoints", f.add)
	mux.HandleFunc("DELETE /v1/endpoints/{name...}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		f.mu.Lock()
		defer f.mu.Unlock()
		i := slices.IndexFunc(f.eps, func(e live.EndpointInfo) bool { return e.Name == name })
		if i < 0 {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no endpoint %q", name)})
			return
		}
		f.eps = slices.Delete(f.eps, i, i+1)
		f.deleted = append(f.deleted, name)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// add is POST /v1/endpoints: the lowest free address (or the one asked
// for), a MAC from it, the name from the container ID.
func (f *fakeDaemon) add(w http.ResponseWriter, r *http.Request) {
	var req attachRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	i := slices.IndexFunc(fakeNetworks, func(n live.NetworkInfo) bool { return n.Name == req.Network })
	if i < 0 {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no network %q", req.Network)})
		return
	}
	nw := fakeNetworks[i]
	name := "cni-" + req.ContainerID[:min(12, len(req.ContainerID))]
	if req.Ifname != "eth0" {
		name += "/" + req.Ifname
	}
	taken := map[string]bool{nw.Gateway: true}
	for _, e := range f.eps {
		if e.Name == name {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("endpoint %q exists", name)})
			return
		}
		for _, ifc := range e.Interfaces {
			taken[netip.MustParsePrefix(ifc.IP).Addr().String()] = true
		}
	}
	subnet := netip.MustParsePrefix(nw.Subnet)
	var ip netip.Addr
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || !subnet.Contains(a) || taken[a.String()] {
			writeJSON(w, http.StatusConflict, map[string]any{"error": fmt.Sprintf("ip %q is not free in %s", req.IP, nw.Subnet), "line": 0})
			return
		}
		ip = a
	} else {
		for a := subnet.Addr().Next(); subnet.Contains(a); a = a.Next() {
			if !taken[a.String()] {
				ip = a
				break
			}
		}
	}
	b := ip.As4()
	ep := live.EndpointInfo{
		Name:        name,
		NetnsPath:   req.NetnsPath,
		ContainerID: req.ContainerID,
		Interfaces: []live.InterfaceInfo{{
			Name: req.Ifname, Port: name, Network: nw.Name,
			IP:      netip.PrefixFrom(ip, subnet.Bits()).String(),
			MAC:     fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]),
			Gateway: nw.Gateway,
		}},
		Publish: req.Publish,
	}
	if nw.DNS {
		ep.DNS = []string{nw.Gateway}
	}
	f.eps = append(f.eps, ep)
	writeJSON(w, http.StatusCreated, ep)
}

// put adds an endpoint as if another client had made it.
func (f *fakeDaemon) put(ep live.EndpointInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eps = append(f.eps, ep)
}

// last is the endpoint the fake instance made last.
func (f *fakeDaemon) last() live.EndpointInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.eps[len(f.eps)-1]
}

// endpointNames lists the endpoints the fake instance has.
func (f *fakeDaemon) endpointNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for _, e := range f.eps {
		names = append(names, e.Name)
	}
	return names
}

// lastRequest is the last POST /v1/endpoints body.
func (f *fakeDaemon) lastRequest(t *testing.T) attachRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.requests)
	return f.requests[len(f.requests)-1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fakeIPAMConf is the ipam section the fake IPAM plugin reads: it hands
// out Address with Gateway, Routes and DNS, and appends each command it
// runs to Log.
type fakeIPAMConf struct {
	Type    string   `json:"type"`
	Address string   `json:"address"`
	Gateway string   `json:"gateway"`
	Routes  []string `json:"routes"`
	DNS     []string `json:"dns"`
	Log     string   `json:"log"`
}

// fakeIPAM is the main of the test binary run as the IPAM plugin
// "test-ipam".
func fakeIPAM() {
	record := func(args *skel.CmdArgs, cmd string) (*fakeIPAMConf, error) {
		var c struct {
			CNIVersion string       `json:"cniVersion"`
			IPAM       fakeIPAMConf `json:"ipam"`
		}
		if err := json.Unmarshal(args.StdinData, &c); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(c.IPAM.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		_, err = fmt.Fprintf(f, "%s %s\n", cmd, args.ContainerID)
		return &c.IPAM, err
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := record(args, "ADD")
			if err != nil {
				return err
			}
			addr, err := types.ParseCIDR(c.Address)
			if err != nil {
				return err
			}
			r := &current.Result{CNIVersion: current.ImplementedSpecVersion,
				IPs: []*current.IPConfig{{Address: *addr, Gateway: net.ParseIP(c.Gateway)}},
				DNS: types.DNS{Nameservers: c.DNS}}
			for _, s := range c.Routes {
				dst, err := types.ParseCIDR(s)
				if err != nil {
					return err
				}
				r.Routes = append(r.Routes, &types.Route{Dst: *dst})
			}
			return types.PrintResult(r, cniVersionOf(args.StdinData))
		},
		Del:    func(args *skel.CmdArgs) error { _, err := record(args, "DEL"); return err },
		Check:  func(args *skel.CmdArgs) error { _, err := record(args, "CHECK"); return err },
		Status: func(args *skel.CmdArgs) error { _, err := record(args, "STATUS"); return err },
		GC:     func(args *skel.CmdArgs) error { _, err := record(args, "GC"); return err },
	}, supported, "test ipam")
}

// cniVersionOf is the cniVersion of a configuration.
func cniVersionOf(conf []byte) string {
	var c types.PluginConf
	_ = json.Unmarshal(conf, &c)
	return c.CNIVersion
}
