// Package vswitch owns the learning switch: one Switch per network, its
// ports, its forwarding database (FDB) with learning, ageing, station moves,
// static entries and a size limit, flooding, and per-port counters.
//
// It is named vswitch because Go forbids a package named switch.
//
// A frame enters with Switch.Input on the goroutine that read it and is
// written to its egress ports before Input returns (run to completion): no
// channel hop, no copy, no allocation on the known-unicast path. Egress
// devices must not keep the frame slice after WriteFrame returns.
//
// This package is internal to uswitch: its API may change without notice,
// except for [Entry], which uswitchtest.Network.FDB returns.
// Code outside uswitch uses package uswitchtest.
package vswitch
