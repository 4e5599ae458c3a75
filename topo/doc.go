// Package topo applies a config.Plan to the kernel and removes it again. It
// owns the network namespaces (named like `ip netns add` does, so that
// `ip netns exec NAME ...` works), the endpoint links (TAP devices moved
// into the namespaces, veth pairs whose host ends are read with AF_PACKET
// sockets), the /etc/netns/<ns> files (hosts, hostname, resolv.conf), and
// the state file that records everything an instance made, written before
// each object is created, so that what a crashed (even kill -9'ed) run left
// behind can be removed by Down or by the next Apply.
//
// Namespace switches (setns) are per OS thread: topo configures namespaces
// through netlink handles bound to them and, where a thread has to enter a
// namespace, does so on a locked thread that is discarded afterwards, so no
// goroutine ever runs on a thread left in the wrong namespace.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package topo
