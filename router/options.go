package router

import (
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// IPv4 option types (RFC 791) that ip_options_compile checks.
const (
	optEnd  = 0
	optNOP  = 1
	optRR   = 7   // record route
	optTS   = 68  // timestamp
	optLSRR = 131 // loose source route
	optSSRR = 137 // strict source route
)

// checkOptions judges the options of an IPv4 header longer than 20 bytes
// as Linux's ip_rcv_options does with accept_source_route=0: options whose
// lengths do not parse (or a route or timestamp option too short for its
// pointer) are dropped as bad-ip-options, a source route (LSRR or SSRR) as
// source-route. It returns the reason and false for a packet to drop.
func checkOptions(ip packet.IPv4) (stats.Reason, bool) {
	opts := ip[packet.IPv4MinHeaderLen:ip.HeaderLen()]
	srr := false
	for i := 0; i < len(opts); {
		switch opts[i] {
		case optEnd:
			i = len(opts)
			continue
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return stats.BadIPOptions, false
		}
		n := int(opts[i+1])
		if n < 2 || i+n > len(opts) {
			return stats.BadIPOptions, false
		}
		switch opts[i] {
		case optLSRR, optSSRR, optRR:
			if n < 3 || opts[i+2] < 4 {
				return stats.BadIPOptions, false
			}
			if opts[i] != optRR {
				if srr {
					return stats.BadIPOptions, false // two source routes
				}
				srr = true
			}
		case optTS:
			if n < 4 || opts[i+2] < 5 {
				return stats.BadIPOptions, false
			}
		}
		i += n
	}
	if srr {
		return stats.SourceRoute, false
	}
	return 0, true
}
