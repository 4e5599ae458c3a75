// Package tap owns the devices a switch port reads and writes: a plain TAP
// opened with songgao/water (OpenTAP), a TAP with vnet headers and
// checksum/segmentation offloads opened with x/sys/unix (OpenVnetTAP), the
// host end of a veth read with an AF_PACKET socket, with or without vnet
// headers (OpenPacket), optionally through a receive ring shared with the
// kernel (OpenPacketWith, PacketOptions.Ring: PACKET_RX_RING, TPACKET_V2),
// whose frames a poll thread processes in place (Lender, TryBorrow), and
// in-memory ports for tests (NewMem,
// NewMemOffload). All of them implement Port; each frame comes and goes
// with its packet.Offload, and a port without offloads segments a
// super-frame (gso) before writing it. DisableOffloads turns off the
// checksum and segmentation offloads of an interface (the namespace side of
// a veth read without vnet headers) so that its peer only ever sees
// complete, MTU-sized frames.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package tap
