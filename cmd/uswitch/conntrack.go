package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/uswitch-dev/uswitch/nat"
)

func cmdConntrack(args []string) error {
	return conntrack(context.Background(), args, os.Stdout, os.Stderr)
}

// conntrack is `uswitch conntrack`: the connection table, one connection a
// line like `conntrack -L`, and on stderr how many were shown.
func conntrack(ctx context.Context, args []string, w, stderr io.Writer) error {
	fs := newFlagSet("conntrack", conntrackSynopsis)
	var f inspectFlags
	f.register(fs)
	// Filters, applied by the server, like conntrack -L's -f, -p, -s, -d,
	// --sport, --dport and --state (all on the original direction).
	filters := []struct{ name, usage string }{
		{"family", "show only connections of address family `F`: ipv4 or ipv6"},
		{"proto", "show only connections of protocol `P`: tcp, udp, icmp or icmpv6"},
		{"src", "show only connections whose original source is `IP` (IPv4 or IPv6)"},
		{"dst", "show only connections whose original destination is `IP`"},
		{"sport", "show only connections whose original source port is `N`"},
		{"dport", "show only connections whose original destination port is `N`"},
		{"state", "show only TCP connections in state `S` (ESTABLISHED, TIME_WAIT, ...)"},
	}
	vals := make([]*string, len(filters))
	for i, fl := range filters {
		vals[i] = fs.String(fl.name, "", fl.usage)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	path := "/v1/conntrack"
	q := url.Values{}
	for i, fl := range filters {
		if *vals[i] != "" {
			q.Set(fl.name, *vals[i])
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var entries []nat.Entry
	if err := getJSON(ctx, c, path, &entries); err != nil {
		return err
	}
	if f.output == formatJSON {
		if err := writeJSON(w, entries); err != nil {
			return err
		}
	} else {
		var b strings.Builder
		for _, e := range entries {
			b.WriteString(conntrackLine(e))
			b.WriteByte('\n')
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stderr, "uswitch: %d flow entries have been shown.\n", len(entries))
	return err
}

// conntrackLine is a connection as `conntrack -L` prints it: protocol name
// and number, seconds left, the TCP state, the original tuple and its
// counters ([UNREPLIED] while nothing came back), the reply tuple and its
// counters, [ASSURED] once assured (a reply, and for TCP a completed
// handshake), and the NAT applied, e.g.
//
//	tcp      6 431999 ESTABLISHED src=172.20.0.10 dst=10.250.0.1 sport=40000 dport=80 packets=5 bytes=400 src=10.250.0.1 dst=10.250.0.2 sport=80 dport=40000 packets=4 bytes=300 [ASSURED] snat
func conntrackLine(e nat.Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %d %d ", e.Proto, protoNumber(e.Proto), int64(time.Duration(e.Timeout)/time.Second))
	if e.State != "" {
		b.WriteString(e.State + " ")
	}
	b.WriteString(tupleText(e.Proto, e.Orig, nat.Original))
	fmt.Fprintf(&b, " packets=%d bytes=%d ", e.Packets[0], e.Bytes[0])
	if !e.Replied {
		b.WriteString("[UNREPLIED] ")
	}
	b.WriteString(tupleText(e.Proto, e.Reply, nat.Reply))
	fmt.Fprintf(&b, " packets=%d bytes=%d", e.Packets[1], e.Bytes[1])
	if e.Assured {
		b.WriteString(" [ASSURED]")
	}
	if e.SNAT {
		b.WriteString(" snat")
	}
	if e.DNAT {
		b.WriteString(" dnat")
	}
	return b.String()
}

// tupleText is one direction of a connection: addresses and ports, or for
// ICMP and ICMPv6 the echo's type, code and identifier (conntrack tracks
// echoes only).
func tupleText(proto string, t nat.TupleView, d nat.Dir) string {
	s := fmt.Sprintf("src=%s dst=%s ", t.Src, t.Dst)
	switch proto {
	case "tcp", "udp":
		return s + fmt.Sprintf("sport=%d dport=%d", t.Sport, t.Dport)
	case "icmp", "icmpv6":
		req, rep := 8, 0 // echo request and reply
		if proto == "icmpv6" {
			req, rep = 128, 129
		}
		typ := req
		if d == nat.Reply {
			typ = rep
		}
		return s + fmt.Sprintf("type=%d code=0 id=%d", typ, t.Sport)
	}
	return strings.TrimSuffix(s, " ")
}

// protoNumber is the IP protocol number of a conntrack protocol name:
// tcp, udp, icmp or "proto-N".
func protoNumber(name string) int {
	switch name {
	case "tcp":
		return 6
	case "udp":
		return 17
	case "icmp":
		return 1
	case "icmpv6":
		return 58
	}
	n, err := strconv.Atoi(strings.TrimPrefix(name, "proto-"))
	if err != nil {
		return 0
	}
	return n
}
