package router

import (
	"encoding/binary"
	"hash/maphash"

	"github.com/uswitch-dev/uswitch/packet"
)

// DNS over TCP to a gateway, without a TCP stack: a responder just big
// enough for DNS's one query, one answer exchange. It keeps no state: its
// initial sequence number is a keyed hash of the connection, every segment
// it sends follows from the one it answers, and it closes its side with
// the answer. A lost segment is recovered by the client retrying the query.

// dnsMSS is the segment size of answers: the minimum every IPv4 host takes,
// since the responder does not remember the client's MSS option.
const dnsMSS = 536

var isnSeed = maphash.MakeSeed()

// dnsTCP handles a TCP segment to port 53 of the ingress network's gateway
// and reports whether it did; anything else gets the usual reset.
func (r *Router) dnsTCP(p *Port, frame []byte) bool {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	t := packet.TCP(ip.Payload())
	if r.dns == nil || p.Network == "" || ip.Dst() != p.ip || !t.Valid() || binary.BigEndian.Uint16(t[2:4]) != dnsPort {
		return false
	}
	flags := t.Flags()
	src, sport := ip.Src(), binary.BigEndian.Uint16(t[0:2])
	data := t[t.HeaderLen():]
	seg := tcpSeg{r: r, src: p.ip, dst: src, sport: dnsPort, dport: sport}
	switch {
	case flags&packet.TCPRst != 0:
		return true
	case flags&packet.TCPSyn != 0 && flags&packet.TCPAck == 0:
		var h maphash.Hash
		h.SetSeed(isnSeed)
		h.Write(src[:])
		h.Write(t[0:2])
		h.Write(t[4:8])
		seg.seq, seg.ack = uint32(h.Sum64()), t.Seq()+1
		seg.send(packet.TCPSyn|packet.TCPAck, nil)
		return true
	case flags&packet.TCPAck == 0:
		return true
	}
	seg.seq = t.Ack()
	seg.ack = t.Seq() + uint32(len(data))
	if flags&packet.TCPFin != 0 {
		seg.ack++
	}
	if len(data) == 0 {
		if flags&packet.TCPFin != 0 {
			seg.send(packet.TCPAck, nil) // the client's close, after our answer
		}
		return true
	}
	// One DNS message, with its two-byte length, in this segment: what
	// resolvers send for a query.
	if len(data) < 2 || int(binary.BigEndian.Uint16(data)) != len(data)-2 {
		seg.send(packet.TCPAck|packet.TCPRst, nil)
		return true
	}
	if !r.dns.QueryTCP(p.Network, src, sport, data[2:], seg.answer) {
		return false
	}
	return true
}

// tcpSeg is the responder's side of one exchange.
type tcpSeg struct {
	r        *Router
	src, dst [4]byte
	sport    uint16
	dport    uint16
	seq, ack uint32
}

// answer sends msg with its length prefix, in segments of at most dnsMSS,
// the last one closing the connection. Any goroutine may call it.
func (s tcpSeg) answer(msg []byte) {
	if len(msg) > 0xffff {
		return
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	for len(out) > 0 {
		n := min(len(out), dnsMSS)
		flags := uint8(packet.TCPAck | packet.TCPPsh)
		if n == len(out) {
			flags |= packet.TCPFin
		}
		s.send(flags, out[:n])
		s.seq += uint32(n)
		out = out[n:]
	}
}

// send builds and routes one segment.
func (s tcpSeg) send(flags uint8, data []byte) {
	r := s.r
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	tl := packet.TCPMinHeaderLen + len(data)
	f := (*bp)[:packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+tl]
	ip := f[packet.EthernetHeaderLen:]
	packet.PutIPv4Header(ip, uint16(len(ip)), r.nextID(), generatedTTL, packet.ProtoTCP, s.src, s.dst)
	t := ip[packet.IPv4MinHeaderLen:]
	clear(t[:packet.TCPMinHeaderLen])
	binary.BigEndian.PutUint16(t[0:2], s.sport)
	binary.BigEndian.PutUint16(t[2:4], s.dport)
	binary.BigEndian.PutUint32(t[4:8], s.seq)
	binary.BigEndian.PutUint32(t[8:12], s.ack)
	t[12] = 5 << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:16], 65535)
	copy(t[packet.TCPMinHeaderLen:], data)
	binary.BigEndian.PutUint16(t[16:18], packet.Checksum(t, packet.PseudoHeaderSum(s.src, s.dst, packet.ProtoTCP, uint16(tl))))
	r.send(f)
}
