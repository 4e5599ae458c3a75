// Package config owns net.toml: parsing, defaults, validation with line
// numbers, IPAM and MAC derivation, and the resolved Plan that every other
// package consumes.
//
// [Parse] turns the file into a [Plan] in which nothing is left to default or
// check: every endpoint has its namespace, interfaces, addresses, MACs and
// switch port names, every published port its host port, every rule its
// parsed matches. A bad file yields an [*Error] per problem (joined with
// errors.Join, sorted by line), each naming the offending object and line.
//
// Resolution rules that the file does not spell out:
//   - IPAM: explicit addresses are claimed first; the others get the lowest
//     free address of their network in file order, skipping the network,
//     gateway and broadcast addresses.
//   - MACs: 02:42 followed by the four bytes of the IPv4 address, as Docker
//     does; gateways too.
//   - Ports: an endpoint's first interface is its switch port "<endpoint>",
//     the others "<endpoint>/eth<i>".
//   - Published ports without a host port get the lowest port of
//     publish_range that no other publish (of the same protocol) uses.
//   - Rules: "proto = all" is stored as an empty Proto; a bare src/dst address
//     means /32; port ranges are inclusive.
//
// This package is public API of uswitch: a Plan and its types are what
// `uswitch check` prints and what package uswitchtest runs.
package config
