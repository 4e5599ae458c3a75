// Package tap owns the devices a switch port reads and writes: a TAP opened
// with songgao/water (OpenTAP), the host end of a veth read with an
// AF_PACKET socket (OpenPacket), and an in-memory port for tests (NewMem).
// All of them implement Port. DisableOffloads turns off the checksum and
// segmentation offloads of an interface (the namespace side of a veth) so
// that its peer only ever sees complete, MTU-sized frames.
package tap
