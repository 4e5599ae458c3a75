package tap

import (
	"fmt"

	"github.com/uswitch-dev/uswitch/packet"
)

// VnetFrame splits what one read(2) of a vnet-header TAP put in b (a
// virtio-net header, then the frame) into the frame and its offloads, as
// the TAP's own reads do; for readers that read the descriptor themselves
// (an io_uring's multishot read). The frame is b's own bytes.
func VnetFrame(b []byte) ([]byte, packet.Offload, error) {
	if len(b) < packet.VnetHdrLen {
		return nil, packet.Offload{}, shortVnet(len(b))
	}
	return b[packet.VnetHdrLen:], packet.DecodeVnetHdr(b), nil
}

// shortVnet is the error of a read too short for the vnet header.
func shortVnet(n int) error { return fmt.Errorf("short read: %d bytes, no vnet header", n) }

// VnetReads is a Polled port whose descriptor returns, to each read(2),
// one frame preceded by its vnet header, which VnetFrame splits: a
// VnetTAP and each of its queues. A reader may then read the descriptor
// itself (an io_uring). A packet socket's reads need recvmsg.
type VnetReads interface {
	Polled
	VnetReads()
}

// VnetReads implements VnetReads.
func (t *VnetTAP) VnetReads() {}

// VnetReads implements VnetReads.
func (q *TAPQueue) VnetReads() {}
