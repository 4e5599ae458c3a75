// Package tap owns the devices a switch port reads and writes: a TAP opened
// with songgao/water, the host end of a veth read with an AF_PACKET socket,
// and an in-memory port for tests. All of them implement Port.
package tap
