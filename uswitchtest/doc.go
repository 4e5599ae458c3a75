// Package uswitchtest runs a whole uswitch network inside a Go test, without
// root, namespaces or devices, the way net/http/httptest runs an HTTP server:
// New builds the datapath of a net.toml (switches, router, NAT and rules,
// embedded DNS, capture) with an in-memory port for every endpoint interface
// and for the uplink, so a test can send and receive raw frames on any port
// (Endpoint, Host) or, through Stack, use a userspace TCP/IP stack (gVisor's
// netstack) with that port's MAC, address, routes and resolver: an
// http.Server listening in one endpoint and an http.Client dialling from
// another talk through the switch, the router, masquerade, published ports
// and the embedded DNS exactly as they would under `uswitch run`.
//
// Time is a fake clock (Network.Clock): FDB ageing, ARP and connection
// timeouts move only when the test advances it. The netstack's own TCP
// timers run in real time.
//
// Nothing opens a socket, a device or a namespace: the userland proxy runs
// on the host side's stack (Network.Host), listening on its 127.0.0.1 and
// host_address for every published port as under `uswitch run`, and a [dns]
// upstream is dialled through that stack, where the test can serve it. Everything New starts stops
// in t.Cleanup; no goroutine is left behind.
//
// This package is public API of uswitch, as is package config for the types
// of a plan; the other packages of the module are internal to uswitch.
package uswitchtest
