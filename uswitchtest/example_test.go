package uswitchtest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/uswitch-dev/uswitch/uswitchtest"
)

// lab is the net.toml of the examples: web and client on front, db alone
// on back, an uplink to the host side. Networks are isolated from each
// other unless they say isolate = false.
const lab = `
name = "lab"

[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[network]]
name = "back"
subnet = "172.21.0.0/24"
isolate = true

[[endpoint]]
name = "web"
network = "front"
ip = "172.20.0.10"
aliases = ["www"]
publish = ["8080:80/tcp"]

[[endpoint]]
name = "client"
network = "front"
ip = "172.20.0.20"

[[endpoint]]
name = "db"
network = "back"
ip = "172.21.0.30"
`

// serve runs an HTTP server on a stack's port 80 that answers with the
// client's address; stop closes it.
func serve(st *uswitchtest.Stack) (stop func()) {
	l, err := st.Listen("tcp", ":80")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello %s", host)
	})}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	return func() { srv.Close(); <-done }
}

// get fetches url with an HTTP client that dials from st.
func get(st *uswitchtest.Stack, url string) string {
	tr := &http.Transport{DialContext: st.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Two endpoints of one network talk HTTP: the client finds the server by
// its name through the embedded DNS, the switch carries the frames.
func Example() {
	n, err := uswitchtest.Start(lab) // in a test: n := uswitchtest.New(t, lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	defer serve(n.Endpoint("web").Stack())()

	fmt.Println(get(n.Endpoint("client").Stack(), "http://web/"))
	// Output: hello 172.20.0.20
}

// A client behind masquerade: a server on the host side sees it with the
// uplink's address.
func Example_masquerade() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	defer serve(n.Host().Stack())()

	fmt.Println(get(n.Endpoint("client").Stack(), "http://10.250.0.1/"))
	// Output: hello 10.250.0.2
}

// The host side reaches web's published port 8080 at the uplink address;
// web sees the host's own address.
func Example_publish() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	defer serve(n.Endpoint("web").Stack())()

	fmt.Println(get(n.Host().Stack(), "http://10.250.0.2:8080/"))
	// Output: hello 10.250.0.1
}

// The embedded DNS answers an endpoint's names and aliases on its
// network, and no others.
func Example_dns() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	st := n.Endpoint("client").Stack()
	ctx := context.Background()

	for _, name := range []string{"web", "www", "web.front", "db"} {
		addrs, err := st.LookupHost(ctx, name)
		if err != nil {
			fmt.Println(name, "does not resolve")
			continue
		}
		fmt.Println(name, addrs)
	}
	// Output:
	// web [172.20.0.10]
	// www [172.20.0.10]
	// web.front [172.20.0.10]
	// db does not resolve
}

// An isolated network is reached from no other: the router drops the
// connection attempt and counts it.
func Example_isolation() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	l, err := n.Endpoint("db").Stack().Listen("tcp", ":5432")
	if err != nil {
		panic(err)
	}
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = n.Endpoint("web").Stack().DialContext(ctx, "tcp", "172.21.0.30:5432")
	fmt.Println("dial failed:", err != nil)
	for _, p := range n.Ports() {
		if p.Name == "gw/front" {
			fmt.Println("gw/front dropped as isolated:", p.Drops["isolated"] > 0)
		}
	}
	// Output:
	// dial failed: true
	// gw/front dropped as isolated: true
}

// A switch learns where a MAC is from the frames it sees: after client's
// ARP request for web (a broadcast, flooded to web), the FDB of front has
// client's MAC on port client, and ages it out when the clock has moved
// past fdb_ageing (300 s by default).
func Example_fdb() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	client := n.Endpoint("client")

	client.Send(arpRequest(client.MAC(), client.Addr().Addr().As4(), [4]byte{172, 20, 0, 10}))
	if n.Endpoint("web").Recv(time.Second) != nil {
		fmt.Println("web got the request")
	}
	for _, e := range n.FDB("front") {
		if !e.Static {
			fmt.Println(e.MAC, "on", e.Port)
		}
	}
	n.Clock().Advance(301 * time.Second)
	fmt.Println("learned after 301 s:", len(learned(n.FDB("front"))))
	// Output:
	// web got the request
	// 02:42:ac:14:00:14 on client
	// learned after 301 s: 0
}

// With the userland proxy (userland_proxy = true, the default) the host
// side also reaches web's published port at its own loopback and address,
// as a program on the host does under `uswitch run`; web sees the proxy
// connect from the host's address.
func Example_userlandProxy() {
	n, err := uswitchtest.Start(lab)
	if err != nil {
		panic(err)
	}
	defer n.Close()
	defer serve(n.Endpoint("web").Stack())()

	fmt.Println(get(n.Host().Stack(), "http://127.0.0.1:8080/"))
	fmt.Println(get(n.Host().Stack(), "http://10.250.0.1:8080/"))
	// Output:
	// hello 10.250.0.1
	// hello 10.250.0.1
}
