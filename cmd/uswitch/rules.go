package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/nat"
)

// hooks are the rule hooks in netfilter's order, as `uswitch rules` lists
// its chains.
var hooks = []string{"prerouting", "input", "forward", "output", "postrouting"}

func cmdRules(args []string) error { return rules(context.Background(), args, os.Stdout) }

// rules is `uswitch rules`: the compiled rule set per hook with its
// counters, like `iptables -L -v -n`.
func rules(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("rules", "[-x] [-o table|json] [--control PATH | --config FILE]")
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
	var rows []nat.RuleRow
	if err := getJSON(ctx, c, "/v1/rules", &rows); err != nil {
		return err
	}
	if f.output == formatJSON {
		return writeJSON(w, rows)
	}
	return writeRules(w, rows, *exact)
}

// writeRules prints rows chain by chain, every hook in netfilter's order
// (empty ones too, as iptables does), a blank line between chains.
func writeRules(w io.Writer, rows []nat.RuleRow, exact bool) error {
	var b strings.Builder
	order := slices.Clone(hooks)
	for _, r := range rows { // a hook this CLI does not know yet still shows
		if !slices.Contains(order, r.Hook) {
			order = append(order, r.Hook)
		}
	}
	num := func(n uint64) string {
		if exact {
			return strconv.FormatUint(n, 10)
		}
		return iptablesNum(n)
	}
	for i, h := range order {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Chain %s (policy ACCEPT)\n", strings.ToUpper(h))
		t := newTable("pkts>", "bytes>", "target", "prot", "in", "out", "source", "destination", "")
		for _, r := range rows {
			if r.Hook != h {
				continue
			}
			s := parseSpec(r.Spec)
			target := s.target
			if target == "" {
				target = strings.ToUpper(r.Action)
			}
			extra := s.extra
			if r.Comment != "" {
				extra = append(extra, "/* "+r.Comment+" */")
			}
			t.add(num(r.Packets), num(r.Bytes), target, s.prot, s.in, s.out, s.src, s.dst, strings.Join(extra, " "))
		}
		if err := t.write(&b); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ruleCells are the columns of a rule in `iptables -L -v -n` and what
// follows them.
type ruleCells struct {
	target, prot, in, out, src, dst string
	extra                           []string
}

// parseSpec splits a rule's iptables-style spec (nat.RuleRow.Spec, e.g.
// "-s 172.20.0.0/24 ! -i back -o uplink -p tcp --dport 80 -m conntrack
// --ctstate NEW -j DNAT --to-destination 172.20.0.10:80") into the columns
// iptables -L shows: target, prot, in, out, source, destination, then the
// matches and target options ("tcp dpt:80 ctstate NEW to:172.20.0.10:80").
// Anything it does not know is kept verbatim in the extras.
func parseSpec(spec string) ruleCells {
	c := ruleCells{prot: "all", in: "*", out: "*", src: "0.0.0.0/0", dst: "0.0.0.0/0"}
	var notIn, ports []string
	tok := strings.Fields(spec)
	for i := 0; i < len(tok); i++ {
		neg := ""
		if tok[i] == "!" && i+1 < len(tok) {
			neg = "!"
			i++
		}
		opt := tok[i]
		val := ""
		hasVal := i+1 < len(tok) && !strings.HasPrefix(tok[i+1], "-") && tok[i+1] != "!"
		if hasVal {
			val = tok[i+1]
		}
		switch {
		case !hasVal:
			c.extra = append(c.extra, neg+opt)
			continue
		case opt == "-s":
			c.src = neg + addrCell(val)
		case opt == "-d":
			c.dst = neg + addrCell(val)
		case opt == "-i" && neg != "":
			notIn = append(notIn, neg+val)
		case opt == "-i":
			c.in = val
		case opt == "-o":
			c.out = neg + val
		case opt == "-p":
			c.prot = neg + val
		case opt == "--sport" || opt == "--dport":
			name := "spt"
			if opt == "--dport" {
				name = "dpt"
			}
			if strings.Contains(val, ":") {
				name += "s" // iptables' spts:/dpts: for a range
			}
			ports = append(ports, neg+name+":"+val)
		case opt == "-m":
			// the match module's options follow and are shown instead
		case opt == "--ctstate":
			c.extra = append(c.extra, "ctstate "+neg+val)
		case opt == "-j":
			c.target = val
		case opt == "--to-destination" || opt == "--to-source":
			c.extra = append(c.extra, "to:"+val)
		case opt == "--reject-with":
			c.extra = append(c.extra, "reject-with "+val)
		default:
			c.extra = append(c.extra, neg+opt+" "+val)
		}
		i++ // the value
	}
	if len(notIn) > 0 {
		c.in = strings.Join(notIn, ",")
	}
	if len(ports) > 0 {
		// iptables shows ports after the protocol match that carries them.
		m := strings.Join(ports, " ")
		if c.prot != "all" {
			m = strings.TrimPrefix(c.prot, "!") + " " + m
		}
		c.extra = append([]string{m}, c.extra...)
	}
	return c
}

// addrCell is an address as iptables -n shows it: a host without its /32.
func addrCell(s string) string { return strings.TrimSuffix(s, "/32") }

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
