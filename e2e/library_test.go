package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/nsthread"
	"github.com/uswitch-dev/uswitch/uswitchtest"
)

// libraryConfig: web (publishing 80 as 8080) and client on front, db on
// back (networks are isolated from each other by default), an uplink whose
// host side is a namespace of the test's own.
func libraryConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.7.2/30"
host_address = "10.253.7.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.97.0.0/24"

[[network]]
name = "back"
subnet = "10.98.0.0/24"

[[endpoint]]
name = "%[1]s-web"
network = "front"
publish = ["8080:80/tcp"]

[[endpoint]]
name = "%[1]s-client"
network = "front"

[[endpoint]]
name = "%[1]s-db"
network = "back"
`, name)
}

// world is where the scenarios of the library's examples run: the
// namespaces of `uswitch run`, or uswitchtest's network in the test
// process. where is an endpoint's name or "host" (the uplink's host side).
type world interface {
	listen(t *testing.T, where, addr string) net.Listener
	// dial connects by TCP from where to addr, whose host may be a name
	// that the embedded DNS resolves.
	dial(ctx context.Context, where, addr string) (net.Conn, error)
}

// libWorld is uswitchtest's network.
type libWorld struct{ n *uswitchtest.Network }

func (w libWorld) stack(where string) *uswitchtest.Stack {
	if where == "host" {
		return w.n.Host().Stack()
	}
	return w.n.Endpoint(where).Stack()
}

func (w libWorld) listen(t *testing.T, where, addr string) net.Listener {
	l, err := w.stack(where).Listen("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

func (w libWorld) dial(ctx context.Context, where, addr string) (net.Conn, error) {
	return w.stack(where).DialContext(ctx, "tcp", addr)
}

// nsWorld is the namespaces of a running instance. Names are resolved by
// asking the gateway's DNS from inside the namespace, as its resolv.conf
// says to.
type nsWorld struct {
	name    string            // instance
	gateway map[string]string // endpoint -> its gateway
}

func (w nsWorld) ns(where string) string {
	if where == "host" {
		return w.name + "-host"
	}
	return where
}

func (w nsWorld) listen(t *testing.T, where, addr string) net.Listener {
	return listen(t, w.ns(where), addr)
}

func (w nsWorld) dial(ctx context.Context, where, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ns, err := nsthread.Open(w.ns(where))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var c net.Conn
	err = nsthread.In(ns, func() error {
		if net.ParseIP(host) == nil {
			gw, ok := w.gateway[where]
			if !ok {
				return fmt.Errorf("%s has no resolver", where)
			}
			q := new(miekg.Msg)
			q.SetQuestion(miekg.Fqdn(host), miekg.TypeA)
			r, _, err := (&miekg.Client{Net: "udp", Timeout: 3 * time.Second}).ExchangeContext(ctx, q, net.JoinHostPort(gw, "53"))
			if err != nil {
				return err
			}
			if len(r.Answer) == 0 {
				return fmt.Errorf("%s: no such host (%s)", host, miekg.RcodeToString[r.Rcode])
			}
			host = r.Answer[0].(*miekg.A).A.String()
		}
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", net.JoinHostPort(host, port))
		return err
	})
	return c, err
}

// serveHTTP answers every request on l with the client's address.
func serveHTTP(t *testing.T, l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	})}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// httpGet fetches url with a client that dials from where.
func httpGet(t *testing.T, w world, where, url string) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return w.dial(ctx, where, addr) }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	require.NoError(t, err, "GET %s from %s", url, where)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// libraryScenarios runs the four scenarios of examples/ and those of the
// userland proxy in w and returns what each observed.
func libraryScenarios(t *testing.T, w world, name string) map[string]string {
	web, client, db := name+"-web", name+"-client", name+"-db"
	got := map[string]string{}

	// An HTTP GET from client to web's server, by DNS name: web sees client.
	serveHTTP(t, w.listen(t, web, ":80"))
	got["web saw client as"] = httpGet(t, w, client, "http://"+web+"/")

	// client to a server on the host side: the host sees the uplink address.
	hl := w.listen(t, "host", "10.253.7.1:9000")
	seen := make(chan string, 1)
	go func() {
		c, err := hl.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		seen <- host
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := w.dial(ctx, client, "10.253.7.1:9000")
	require.NoError(t, err)
	got["host saw client as"] = <-seen
	c.Close()

	// The host side reaches web's published port at the uplink address.
	got["web saw host as"] = httpGet(t, w, "host", "http://10.253.7.2:8080/")

	// The userland proxy: the host side reaches the port at its own
	// loopback and address too, and so does client at the host's address;
	// web sees the proxy connect from the host's address.
	got["web saw host via 127.0.0.1 as"] = httpGet(t, w, "host", "http://127.0.0.1:8080/")
	got["web saw host via host_address as"] = httpGet(t, w, "host", "http://10.253.7.1:8080/")
	got["web saw client via host_address as"] = httpGet(t, w, client, "http://10.253.7.1:8080/")

	// client's dial to db, on an isolated network, fails.
	w.listen(t, db, ":5432")
	dctx, dcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer dcancel()
	c, err = w.dial(dctx, client, "10.98.0.2:5432")
	if err == nil {
		c.Close()
		got["client to isolated db"] = "connected"
	} else {
		got["client to isolated db"] = "failed"
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("client to isolated db: %v", err)
		}
	}
	return got
}

// TestLibraryMatchesRun: the scenarios of examples/ give the same results
// against `uswitch run` on real namespaces as with package uswitchtest in
// process, from the same net.toml.
func TestLibraryMatchesRun(t *testing.T) {
	needRoot(t)
	name := prefix("lib")
	cfg := libraryConfig(name)
	start(t, name, writeConfig(t, cfg))
	want := map[string]string{
		"web saw client as":     "10.97.0.3",
		"host saw client as":    "10.253.7.2",
		"web saw host as":       "10.253.7.1",
		"client to isolated db": "failed",

		"web saw host via 127.0.0.1 as":      "10.253.7.1",
		"web saw host via host_address as":   "10.253.7.1",
		"web saw client via host_address as": "10.253.7.1",
	}

	real := libraryScenarios(t, nsWorld{name: name, gateway: map[string]string{name + "-client": "10.97.0.1", name + "-web": "10.97.0.1", name + "-db": "10.98.0.1"}}, name)
	require.Equal(t, want, real, "uswitch run")

	lib := libraryScenarios(t, libWorld{uswitchtest.New(t, cfg)}, name)
	require.Equal(t, want, lib, "uswitchtest")
}

// TestLibraryNoProxyMatchesRun: with userland_proxy = false, the host
// side's 127.0.0.1:8080 is refused and the published port still answers at
// the uplink address, against `uswitch run` and with uswitchtest alike.
func TestLibraryNoProxyMatchesRun(t *testing.T) {
	needRoot(t)
	name := prefix("libnp")
	cfg := strings.Replace(libraryConfig(name), "[uplink]\n", "[uplink]\nuserland_proxy = false\n", 1)
	start(t, name, writeConfig(t, cfg))
	scenarios := func(w world) map[string]string {
		got := map[string]string{}
		serveHTTP(t, w.listen(t, name+"-web", ":80"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := w.dial(ctx, "host", "127.0.0.1:8080")
		switch {
		case err == nil:
			c.Close()
			got["host to 127.0.0.1:8080"] = "connected"
		case strings.Contains(err.Error(), "refused"):
			got["host to 127.0.0.1:8080"] = "refused"
		default:
			got["host to 127.0.0.1:8080"] = err.Error()
		}
		got["web saw host as"] = httpGet(t, w, "host", "http://10.253.7.2:8080/")
		return got
	}
	want := map[string]string{"host to 127.0.0.1:8080": "refused", "web saw host as": "10.253.7.1"}

	require.Equal(t, want, scenarios(nsWorld{name: name}), "uswitch run")
	require.Equal(t, want, scenarios(libWorld{uswitchtest.New(t, cfg)}), "uswitchtest")
}
