// Package control owns the control API of a running instance (HTTP/1.1 +
// JSON over a unix socket, mode 0600, so `curl --unix-socket` works) and the
// client the CLI's inspection commands use.
//
// Endpoints (all GET):
//
//	/v1/fdb[?network=N]         the MAC learning tables ([]FDBEntry)
//	/v1/fdb?watch=1[&network=N] FDB events (vswitch.Event), one JSON object a line
//	/v1/ports                   every port's counters ([]datapath.PortInfo)
//	/v1/neigh                   the router's ARP caches ([]NeighEntry)
//	/v1/routes                  the routing table ([]router.Route)
//	/v1/conntrack[?proto=P]     the connection table ([]nat.Entry); P: tcp, udp, icmp
//	/v1/rules                   the compiled rules and their counters ([]rule.Listed)
//	/v1/capture[?port=P][&network=N][&count=C]  frames as a pcap stream (application/vnd.tcpdump.pcap)
//	/metrics                    Prometheus text format
//
// The server side is Listen, NewHandler and Serve over a Backend (the
// datapath). The client side is Client. Wire types are FDBEntry,
// NeighEntry, datapath.PortInfo, vswitch.Event, router.Route, nat.Entry and
// rule.Listed; errors are {"error": "..."}.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package control

import "path/filepath"

// RunDir is where instances put their control sockets.
const RunDir = "/run/uswitch"

// SocketPath is the control socket of the instance named name:
// /run/uswitch/NAME.sock.
func SocketPath(name string) string { return filepath.Join(RunDir, name+".sock") }
