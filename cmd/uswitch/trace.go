package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"

	"github.com/uswitch-dev/uswitch/datapath"
)

const traceSynopsis = "--port P --dst IP [--src IP] [--proto tcp|udp|icmp] [--sport N] [--dport N] [--flags syn|ack] [--len N] [--ttl N] [--frame HEX] [--reply] [-o table|json] [--control PATH | --config FILE]"

func cmdTrace(args []string) error { return traceCmd(context.Background(), args, os.Stdout) }

// traceCmd is `uswitch trace`: it asks the instance to run a packet built
// as if a port had sent it through the datapath's own code, without side
// effects, and prints each step and the verdict.
func traceCmd(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("trace", traceSynopsis)
	var f inspectFlags
	f.register(fs)
	port := fs.String("port", "", "the ingress `port`: an endpoint's (web, api/eth1) or uplink")
	dst := fs.String("dst", "", "destination `IP`")
	src := fs.String("src", "", "source `IP` (default: the port's endpoint's own)")
	proto := fs.String("proto", "icmp", "`protocol`: tcp, udp or icmp (an echo request)")
	sport := fs.Uint("sport", 0, "source `port` (default 40000; the echo id for icmp)")
	dport := fs.Uint("dport", 0, "destination `port` (default 80 for tcp, 53 for udp)")
	flags := fs.String("flags", "syn", "TCP `flags`: syn (a connection's first segment) or ack")
	length := fs.Uint("len", 0, "IP `length` in bytes (default: headers only)")
	ttl := fs.Uint("ttl", 64, "IP `TTL`")
	frame := fs.String("frame", "", "trace this exact Ethernet frame (`HEX`) instead of building one")
	reply := fs.Bool("reply", false, "trace the answer of the connection the packet makes, too")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *port == "" || *dst == "" && *frame == "" {
		return fmt.Errorf("trace: --port and --dst (or --frame) are required")
	}
	q := url.Values{"port": {*port}}
	for k, v := range map[string]string{"dst": *dst, "src": *src, "proto": *proto, "flags": *flags, "frame": *frame} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]uint{"sport": *sport, "dport": *dport, "len": *length, "ttl": *ttl} {
		if v != 0 {
			q.Set(k, strconv.FormatUint(uint64(v), 10))
		}
	}
	if *reply {
		q.Set("reply", "1")
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	var res datapath.TraceResult
	if err := getJSON(ctx, c, "/v1/trace?"+q.Encode(), &res); err != nil {
		return err
	}
	if f.output == formatJSON {
		return writeJSON(w, res)
	}
	return writeTrace(w, &res)
}

// writeTrace prints a trace's steps as a table, then its verdict, then
// those of the reply.
func writeTrace(w io.Writer, res *datapath.TraceResult) error {
	for r, title := res, ""; r != nil; r, title = r.Reply, "reply:\n" {
		if _, err := io.WriteString(w, title); err != nil {
			return err
		}
		t := newTable("#>", "STEP", "WHERE", "WHAT")
		for i, s := range r.Steps {
			what := s.Text
			if s.Rule != "" {
				what += " [rule: " + s.Rule + "]"
			}
			if s.Reason != "" {
				what += " (" + s.Reason + ")"
			}
			t.add(strconv.Itoa(i+1), s.Kind, s.Where, what)
		}
		if err := t.write(w); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "verdict: %v\n", r.Verdict); err != nil {
			return err
		}
		if r.ReplyError != "" {
			if _, err := fmt.Fprintf(w, "reply: %s\n", r.ReplyError); err != nil {
				return err
			}
		}
		if r.Reply != nil {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	return nil
}
