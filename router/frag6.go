package router

import (
	"sync/atomic"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// reassemble6 holds an IPv6 fragment until its datagram is whole, as
// Linux's nf_defrag_ipv6 does before conntrack, then routes the datagram:
// tracked and translated whole, fragmented again where it leaves.
func (p *Port) reassemble6(frame []byte) {
	d, fragMax := p.r.defrag.Add6(frame, p.stats)
	if d == nil {
		return
	}
	p.route6(*d, packet.Offload{}, nil, fragMax)
	p.r.defrag.Release(d)
}

// fragment6 sends a datagram reassembled from fragments of at most size
// bytes out of p to next hop nh as fragments of at most size bytes again
// (route6 checked that size fits p's MTU), as Linux's ip6_fragment does
// with frag_max_size. The fragments get an identification of the
// router's own (the datagram's source may be translated: two senders'
// identifications could meet behind one address), as Linux's
// ipv6_select_ident.
func (r *Router) fragment6(p *Port, nh [16]byte, frame []byte, size int, rec *trace.Recorder) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	at, named, ok := ip.Unfragmentable()
	chunk := (size - at - packet.IPv6FragmentLen) &^ 7
	if !ok || chunk <= 0 {
		p.stats.Drop(stats.BadIPHeader) // not even 8 bytes of data fit beside its headers
		return
	}
	id := atomic.AddUint32(&r.ipID6, 1)
	n := len(ip) - at
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	for off := 0; off < n; off += chunk {
		end := min(off+chunk, n)
		f := (*bp)[:packet.EthernetHeaderLen+at+packet.IPv6FragmentLen+end-off]
		copy(f, frame[:packet.EthernetHeaderLen])
		packet.PutFragment6(f[packet.EthernetHeaderLen:], ip, at, named, off, end, end < n, id)
		sendVia(p, p.nd.Cache, nh, f, packet.Offload{}, rec)
	}
}
