package tap

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// ringRead is the result of one ringFn call.
type ringRead struct {
	buf   []byte // where a frame too large for its slot is read to
	block bool   // the read waits: for the Go netpoller's edge-triggered wake-ups
	frame []byte
	off   packet.Offload
	ok    bool
	err   error
}

// readRing returns the next frame of the receive ring: in its slot, lent
// until Release, or, one too large for a slot, read into buf; without
// block, ok is false when none was waiting.
func (p *Packet) readRing(buf []byte, block bool) ([]byte, packet.Offload, bool, error) {
	if len(buf) <= 4 {
		return nil, packet.Offload{}, false, portErr("packet", p.name, "read", errShortBuffer)
	}
	p.rr.buf, p.rr.block = buf, block
	ok, err := true, error(nil)
	if block {
		err = p.d.call(p.ringFn, false)
	} else {
		ok, err = p.d.try(p.ringFn)
	}
	p.rr.buf = nil // keep no reference to the caller's buffer
	if err == nil {
		err = p.rr.err
	}
	if err != nil {
		return nil, packet.Offload{}, false, p.d.fail("packet", p.name, "read", err)
	}
	if !ok || !p.rr.ok {
		return nil, packet.Offload{}, false, nil
	}
	return p.rr.frame, p.rr.off, true, nil
}

// ringRead is readRing's raw step, run where the descriptor is valid: false
// means "nothing waiting: wait and retry". Entries that are truncated or
// malformed are handed back, counted, and skipped.
func (p *Packet) ringRead(fd uintptr) bool {
	rr := &p.rr
	rr.frame, rr.ok, rr.err = nil, false, nil
	p.rmu.RLock()
	defer p.rmu.RUnlock()
	if p.gone {
		rr.err = ErrClosed
		return true
	}
	for {
		kind, slot, frame, off := p.ring.next()
		switch kind {
		case entryNone:
			// A second look at an empty ring was woken by something
			// else: an error (ENETDOWN once the interface is down or
			// gone), which recvmsg would have returned without a ring.
			// A read about to wait in the netpoller looks every time:
			// it is woken once per event, and the error's wake-up may
			// have been spent on a frame.
			if p.drained || rr.block {
				if err := sockError(fd); err != nil {
					rr.err = err
					return true
				}
			}
			p.drained = true
			return false
		case entryFrame:
			p.drained = false
			p.lent = slot
			rr.frame, rr.off, rr.ok = frame, off, true
			return true
		case entryCopy:
			// The whole frame waits on the socket, queued before the
			// kernel marked the slot.
			p.ring.release(slot)
			n, off, ok, err := p.rd.recvFd(fd, rr.buf[:len(rr.buf)-4])
			if err != nil {
				rr.err = err
				return true
			}
			if !ok { // not queued after all
				p.ring.copied.Store(p.ring.copied.Load() - 1)
				p.ring.truncated.Store(p.ring.truncated.Load() + 1)
				continue
			}
			p.drained = false
			n, off = p.restore(rr.buf, n, off)
			rr.frame, rr.off, rr.ok = rr.buf[:n], off, true
			return true
		default: // entryBad: counted
			p.ring.release(slot)
		}
	}
}

// sockError returns and clears the socket's pending error (SO_ERROR).
func sockError(fd uintptr) error {
	var v int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

// TryBorrowFrame implements Lender: with a receive ring the frame is read
// in its ring slot; without, it is TryReadFrame into buf.
func (p *Packet) TryBorrowFrame(buf []byte) ([]byte, packet.Offload, bool, error) {
	if p.ring == nil {
		n, off, ok, err := p.TryReadFrame(buf)
		return buf[:n], off, ok, err
	}
	return p.readRing(buf, false)
}

// Release implements Lender: it hands the slot lent by TryBorrowFrame back
// to the kernel, and unmaps the ring if the port was closed meanwhile.
func (p *Packet) Release() {
	if p.ring == nil {
		return
	}
	p.rmu.RLock()
	if p.lent >= 0 {
		p.ring.release(p.lent)
		p.lent = -1
	}
	gone := p.gone
	p.rmu.RUnlock()
	if gone {
		p.rmu.Lock()
		p.ring.unmap()
		p.rmu.Unlock()
	}
}

// RingStats returns the receive ring's counters; false without a ring.
func (p *Packet) RingStats() (RingStats, bool) {
	if p.ring == nil {
		return RingStats{}, false
	}
	return p.ring.stats(), true
}

// unmap releases the ring's memory; it may be called more than once.
func (r *rxRing) unmap() {
	if r == nil || r.mem == nil {
		return
	}
	_ = unix.Munmap(r.mem)
	r.mem = nil
}
