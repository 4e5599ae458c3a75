// Package packet owns the wire formats uswitch touches on its hot path:
// zero-copy header views over []byte (Ethernet, ARP, IPv4), the MAC address
// type the forwarding tables are keyed on, and Internet checksums with
// incremental updates (RFC 1624).
//
// Views never copy and never allocate; a view over a too-short slice must be
// checked with its Valid method before any accessor is used.
package packet
