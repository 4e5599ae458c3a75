// Package e2e holds the end-to-end tests: they build the uswitch binary, run
// it as root on real namespaces, TAP and veth devices, and probe the network
// from inside the namespaces. Without root they skip with a message.
//
// Every test names its instance, namespaces and links with a unique prefix
// and removes them when it ends, pass or fail. Traffic stays inside the
// namespaces the test made.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package e2e
