// Package packet owns the wire formats uswitch touches on its hot path:
// zero-copy header views over []byte (Ethernet, ARP, IPv4, IPv6 and its
// extension headers, ICMP, ICMPv6 and neighbour discovery, UDP, TCP) with builders that take field structs
// (Encode), the MAC address
// type the forwarding tables are keyed on, Internet checksums with
// incremental updates (RFC 1624), and the virtio-net header (Offload) that
// says what a frame from an offloading device still needs.
//
// Views never copy and never allocate; a view over a too-short slice must be
// checked with its Valid method before any accessor is used.
//
// This package is internal to uswitch: its API may change without notice,
// except for [MAC], which package config and uswitchtest use.
// Code outside uswitch uses package uswitchtest.
package packet
