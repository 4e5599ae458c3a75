package uswitchtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	miekg "github.com/miekg/dns"
)

// lookupTimeout bounds one query when ctx has no deadline.
const lookupTimeout = 5 * time.Second

// LookupHost returns the IPv4 addresses of name, like
// net.Resolver.LookupHost: an address is returned as it is; a name is
// asked, over the stack's UDP, of the embedded DNS at the gateway of a
// network with dns = true (the host side, and an endpoint on a network
// without DNS, have no resolver: only addresses work there). An unknown
// name is a *net.DNSError with IsNotFound set.
func (s *Stack) LookupHost(ctx context.Context, name string) ([]string, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []string{a.String()}, nil
	}
	dnsErr := func(msg string, notFound bool) error {
		return &net.DNSError{Err: msg, Name: name, Server: s.p.resolver.String(), IsNotFound: notFound}
	}
	if !s.p.resolver.IsValid() {
		return nil, dnsErr("no resolver: the network has no DNS", false)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
	}
	c, err := s.DialContext(ctx, "udp", netip.AddrPortFrom(s.p.resolver, 53).String())
	if err != nil {
		return nil, dnsErr(err.Error(), false)
	}
	defer c.Close()
	q := new(miekg.Msg)
	q.SetQuestion(miekg.Fqdn(name), miekg.TypeA)
	cl := &miekg.Client{Net: "udp"}
	r, _, err := cl.ExchangeWithConnContext(ctx, q, &miekg.Conn{Conn: c})
	if err != nil {
		return nil, dnsErr(err.Error(), false)
	}
	switch r.Rcode {
	case miekg.RcodeSuccess:
	case miekg.RcodeNameError:
		return nil, dnsErr("no such host", true)
	default:
		return nil, dnsErr(fmt.Sprintf("server answered %s", miekg.RcodeToString[r.Rcode]), false)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*miekg.A); ok {
			out = append(out, a.A.String())
		}
	}
	if len(out) == 0 {
		return nil, dnsErr("no such host", true)
	}
	return out, nil
}
