package packet

// Egress is where a stage hands a frame on, the one interface every hop of
// the frame path is written to: a device (a TAP, an AF_PACKET socket, an
// in-memory port) puts it on the wire, a switch port switches it as
// received on that port, and a router port routes it as arrived on that
// port. So a frame's path reads device -> switch port -> switch -> router
// port -> router -> switch port -> switch -> device, each stage calling
// the next one's WriteFrame.
//
// WriteFrame must not keep frame, and may rewrite it in place; off is the
// frame's offloads (a partial checksum, a GSO super-frame). An egress that
// cannot take off (a device without offloads) turns the frame into wire
// frames itself. A non-nil error means the frame was not sent; the caller
// counts it.
type Egress interface {
	WriteFrame(frame []byte, off Offload) error
}
