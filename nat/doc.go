// Package nat owns what iptables and nf_conntrack do for docker0, in
// userspace: the connection table (5-tuples of both directions, the TCP
// state machine of Linux with its timeouts, UDP and ICMP echo, a size limit
// with early drop of unreplied connections, expiry without a global sweep),
// source and destination NAT decided on a connection's first packet and
// applied to every later packet of both directions with incremental
// checksum updates (RFC 1624), translation of the ICMP errors related to a
// connection (inner header included), and the rule engine: the hooks
// prerouting, input, forward, output and postrouting evaluating the rules
// NewRules compiles from a list of rule.Rule (what package policy makes of
// a config: its [[rule]] entries, then Docker's built-ins), with counters.
// nat knows nothing of configs.
//
// IPv6 goes through the same table and rules (Prerouting6, Postrouting6,
// Output6; Filter serves both): TCP, UDP and ICMPv6 echo tracked with
// IPv4's states and timeouts, NAT66 (masquerade, SNAT, DNAT) with the
// transport checksum updated over the IPv6 pseudo header, ICMPv6 errors
// related and translated (through the quote's extension headers),
// fragments reassembled before (package defrag). Rules are per family, as
// iptables and ip6tables.
//
// The router calls a Tracker at each hook with a Flow that lives on its
// stack: the per-packet path of an established connection allocates
// nothing.
//
// This package is internal to uswitch: its API may change without notice,
// except for [Entry] and [TupleView], which uswitchtest.Network.Conntrack returns.
// Code outside uswitch uses package uswitchtest.
package nat
