package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/rule"
)

func cmdRules(args []string) error { return rules(context.Background(), args, os.Stdout) }

// rules is `uswitch rules`: the compiled rule set per hook with its
// counters, like `iptables -L -v -n`.
func rules(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("rules", rulesSynopsis)
	var f inspectFlags
	f.register(fs)
	exact := fs.Bool("x", false, "exact packet and byte counts, not rounded to K, M, G (like iptables -x)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	var rows []rule.Listed
	if err := getJSON(ctx, c, "/v1/rules", &rows); err != nil {
		return err
	}
	if f.output == formatJSON {
		return writeJSON(w, rows)
	}
	return writeRules(w, rows, *exact)
}

// writeRules prints rows chain by chain, every hook in netfilter's order
// (empty ones too, as iptables does), a blank line between chains, each
// rule in the columns of `iptables -L -v -n`.
func writeRules(w io.Writer, rows []rule.Listed, exact bool) error {
	var b strings.Builder
	num := func(n uint64) string {
		if exact {
			return strconv.FormatUint(n, 10)
		}
		return iptablesNum(n)
	}
	for i, h := range rule.Hooks() {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Chain %s (policy ACCEPT)\n", strings.ToUpper(h.String()))
		t := newTable("pkts>", "bytes>", "target", "prot", "in", "out", "source", "destination", "")
		for _, r := range rows {
			if r.Hook != h {
				continue
			}
			m := &r.Match
			v6 := r.Family == rule.FamilyIPv6
			t.add(num(r.Packets), num(r.Bytes), strings.ToUpper(r.Action.String()), or(m.Proto, "all"),
				inCell(m), or(m.Out, "*"), addrCell(m.Src, v6), addrCell(m.Dst, v6), strings.Join(ruleExtras(&r.Rule), " "))
		}
		if err := t.write(&b); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// or is s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// inCell is the in column: the ingress network, or the ones excluded.
func inCell(m *rule.Match) string {
	if len(m.NotIn) > 0 {
		return "!" + strings.Join(m.NotIn, ",!")
	}
	return or(m.In, "*")
}

// addrCell is a prefix as iptables -n shows it: any as 0.0.0.0/0 (in an
// IPv6 rule, v6, ::/0 as ip6tables shows it), a host without its /32 or
// /128.
func addrCell(p netip.Prefix, v6 bool) string {
	switch {
	case !p.IsValid() && v6:
		return "::/0"
	case !p.IsValid():
		return "0.0.0.0/0"
	case p.IsSingleIP():
		return p.Addr().String()
	}
	return p.String()
}

// ruleExtras are what iptables -L shows after the columns: the protocol
// match's ports, the conntrack states, the target's options and the
// comment ("tcp dpt:80 ctstate NEW to:172.20.0.10:80 /* ... */").
func ruleExtras(r *rule.Rule) []string {
	var out, ports []string
	m := &r.Match
	for _, p := range []struct {
		name  string
		ports rule.Ports
	}{{"spt", m.Sport}, {"dpt", m.Dport}} {
		if p.ports.Any() {
			continue
		}
		name := p.name
		if p.ports[0] != p.ports[1] {
			name += "s" // iptables' spts:/dpts: for a range
		}
		ports = append(ports, name+":"+p.ports.String())
	}
	if len(ports) > 0 {
		// iptables shows ports after the protocol match that carries them.
		out = append(out, strings.TrimSpace(m.Proto+" "+strings.Join(ports, " ")))
	}
	if m.State != 0 {
		out = append(out, "ctstate "+strings.Join(m.State.Names(), ","))
	}
	if to := r.Target(); to != "" {
		out = append(out, "to:"+to)
	}
	if r.Action == rule.Reject {
		out = append(out, "reject-with icmp-port-unreachable/tcp-reset")
	}
	if r.Comment != "" {
		out = append(out, "/* "+r.Comment+" */")
	}
	return out
}

// iptablesNum rounds a counter as iptables -v does: up to 99999 as is, then
// in thousands with K, M, G and T.
func iptablesNum(n uint64) string {
	if n <= 99999 {
		return strconv.FormatUint(n, 10)
	}
	for _, unit := range []string{"K", "M", "G"} {
		n = (n + 500) / 1000
		if n <= 9999 {
			return strconv.FormatUint(n, 10) + unit
		}
	}
	return strconv.FormatUint((n+500)/1000, 10) + "T"
}
