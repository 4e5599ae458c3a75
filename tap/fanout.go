package tap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// PacketQueues is a veth's host end read through several packet sockets
// in one PACKET_FANOUT_HASH group, a socket per poll loop (MultiQueue):
// the kernel hands each frame the interface receives to one member by its
// flow hash, so a direction of a flow is always read by the same loop, in
// order, while other flows go to other loops. Unlike a multi-queue TAP the
// reverse direction is steered by its own hash on the other veth, so it
// may be read by another loop. Writes go out of the socket of the loop
// that read the frame (Offload.Queue), which keeps each loop to its own
// descriptor.
type PacketQueues struct {
	qs []*Packet
	pq []Polled
}

// OpenPacketQueues opens the packet socket of OpenPacketWith, or with
// queues > 1 that many in a PACKET_FANOUT_HASH group (opt.Polled must be
// set: each is read by a poll loop). A kernel or interface that refuses
// the group gets the single socket.
func OpenPacketQueues(ifname string, ifindex int, opt PacketOptions, queues int) (Port, error) {
	first, err := OpenPacketWith(ifname, ifindex, opt)
	if err != nil || queues <= 1 || !opt.Polled {
		return first, err
	}
	// The group is named after the interface (one group per interface, in
	// uswitch's namespace); a member joins once bound.
	arg := ifindex&0xffff | unix.PACKET_FANOUT_HASH<<16
	if err := unix.SetsockoptInt(first.Fd(), unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
		return first, nil // no group: one socket serves
	}
	q := &PacketQueues{qs: []*Packet{first}}
	for len(q.qs) < queues {
		p, err := OpenPacketWith(ifname, ifindex, opt)
		if err == nil {
			if err = unix.SetsockoptInt(p.Fd(), unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
				p.Close()
				err = fmt.Errorf("packet socket on %q: PACKET_FANOUT: %w", ifname, err)
			}
		}
		if err != nil {
			q.Close()
			return nil, err
		}
		q.qs = append(q.qs, p)
	}
	for _, p := range q.qs {
		q.pq = append(q.pq, p)
	}
	return q, nil
}

// Queues implements MultiQueue: the group's sockets.
func (q *PacketQueues) Queues() []Polled { return q.pq }

// Fd implements Polled: the first socket's.
func (q *PacketQueues) Fd() int { return q.qs[0].Fd() }

// TryReadFrame implements Polled: a frame of the first socket.
func (q *PacketQueues) TryReadFrame(b []byte) (int, packet.Offload, bool, error) {
	return q.qs[0].TryReadFrame(b)
}

// ReadFrame implements Port: a frame of the first socket.
func (q *PacketQueues) ReadFrame(b []byte) (int, packet.Offload, error) {
	return q.qs[0].ReadFrame(b)
}

// WriteFrame implements Port: out of the socket off.Queue (the first when
// there are fewer).
func (q *PacketQueues) WriteFrame(frame []byte, off packet.Offload) error {
	p := q.qs[0]
	if i := int(off.Queue); i < len(q.qs) {
		p = q.qs[i]
	}
	return p.WriteFrame(frame, off)
}

// Close implements Port: it closes every socket.
func (q *PacketQueues) Close() error {
	var errs []error
	for _, p := range q.qs {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// RingStats is the sum of the sockets' receive ring counters; false
// without rings.
func (q *PacketQueues) RingStats() (RingStats, bool) {
	var sum RingStats
	found := false
	for _, p := range q.qs {
		if st, ok := p.RingStats(); ok {
			found = true
			sum.Frames += st.Frames
			sum.Copied += st.Copied
			sum.Truncated += st.Truncated
			sum.Malformed += st.Malformed
		}
	}
	return sum, found
}
