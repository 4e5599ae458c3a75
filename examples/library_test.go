package examples

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/uswitch-dev/uswitch/uswitchtest"
)

// No test leaves a goroutine behind: uswitchtest stops everything it
// started in t.Cleanup.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shop is the network under test: a web server and a client on front, a
// database alone on back (networks are isolated from each other by
// default), the host side behind the uplink.
const shop = `
name = "shop"

[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[network]]
name = "back"
subnet = "172.21.0.0/24"

[[endpoint]]
name = "web"
network = "front"
publish = ["8080:80/tcp"]

[[endpoint]]
name = "client"
network = "front"

[[endpoint]]
name = "db"
network = "back"
`

// serveHTTP runs an HTTP server on l that answers with the address the
// request came from, until the test ends.
func serveHTTP(t *testing.T, l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// get does an HTTP GET with a client whose connections are dialled by dial.
func get(t *testing.T, dial func(context.Context, string, string) (net.Conn, error), url string) string {
	t.Helper()
	tr := &http.Transport{DialContext: dial}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// An HTTP GET from one endpoint to another's server, by DNS name.
func TestHTTPByName(t *testing.T) {
	n := uswitchtest.New(t, shop)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, l)

	from := get(t, n.Endpoint("client").Stack().DialContext, "http://web/")
	if want := n.Endpoint("client").Addr().Addr().String() + ":"; !strings.HasPrefix(from, want) {
		t.Errorf("web saw the client as %s, want %s…", from, want)
	}
}

// A TCP connection from an endpoint to a server on the host side, which
// sees the uplink's address (masquerade).
func TestHostSeesUplinkAddress(t *testing.T) {
	n := uswitchtest.New(t, shop)
	l, err := n.Host().Stack().Listen("tcp", "10.250.0.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Addr, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c.RemoteAddr()
		c.Close()
	}()

	c, err := n.Endpoint("client").Stack().DialContext(context.Background(), "tcp", "10.250.0.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := <-accepted
	if from == nil || !strings.HasPrefix(from.String(), "10.250.0.2:") {
		t.Errorf("the host saw the client as %v, want the uplink address 10.250.0.2", from)
	}
}

// The host side reaches web's published port at the uplink address.
func TestHostReachesPublishedPort(t *testing.T) {
	n := uswitchtest.New(t, shop)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	serveHTTP(t, l)

	from := get(t, n.Host().Stack().DialContext, "http://10.250.0.2:8080/")
	if !strings.HasPrefix(from, "10.250.0.1:") {
		t.Errorf("web saw the host as %s, want 10.250.0.1", from)
	}
}

// A dial from front to the isolated network back fails, while db
// listens: the router drops it.
func TestIsolatedNetworkDialFails(t *testing.T) {
	n := uswitchtest.New(t, shop)
	l, err := n.Endpoint("db").Stack().Listen("tcp", ":5432")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	db := n.Endpoint("db").Addr().Addr().String()
	c, err := n.Endpoint("web").Stack().DialContext(ctx, "tcp", db+":5432")
	if err == nil {
		c.Close()
		t.Fatal("web reached db across isolated networks")
	}
	// Nothing is resolved across networks either.
	if _, err := n.Endpoint("web").Stack().LookupHost(context.Background(), "db"); err == nil {
		t.Error("web resolved db, which is on another network")
	}
}
