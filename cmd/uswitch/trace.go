package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/trace"
)

const traceSynopsis = "--port P --dst IP [--src IP] [--proto tcp|udp|icmp] [--sport N] [--dport N] [--flags syn|ack] [--len N] [--ttl N] [--frame HEX] [--reply] " + inspectSynopsis + " | --live [--port P] [--network N] [--match EXPR] [-c N] " + inspectSynopsis

func cmdTrace(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return traceCmd(ctx, args, os.Stdout)
}

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
	live := fs.Bool("live", false, "follow the real frames that enter --port (or --network, or any) and match --match, as they pass")
	network := fs.String("network", "", "with --live: only frames entering network `N` (uplink: the uplink)")
	match := fs.String("match", "", "with --live: a filter `EXPR`: host IP, net CIDR (IPv4 or IPv6), port N, proto P, tcp, udp, icmp, icmp6, arp, ip, ip6, joined by and")
	count := fs.Uint("c", 0, "with --live: stop after `N` frames (0: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *live {
		c, err := f.client()
		if err != nil {
			return err
		}
		q := url.Values{"live": {"1"}}
		for k, v := range map[string]string{"port": *port, "network": *network, "match": *match} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *count > 0 {
			q.Set("count", strconv.FormatUint(uint64(*count), 10))
		}
		return followTrace(ctx, c, "/v1/trace?"+q.Encode(), w, f.output)
	}
	if *port == "" || *dst == "" && *frame == "" {
		return flagError(fs, errors.New("--port and --dst (or --frame) are required"))
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

// followTrace prints the events streamed from path until ctx ends (not an
// error) or the stream ends.
func followTrace(ctx context.Context, c *control.Client, path string, w io.Writer, f outputFormat) error {
	body, err := c.Stream(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if f == formatJSON {
			if _, err := fmt.Fprintf(w, "%s\n", sc.Bytes()); err != nil {
				return err
			}
			continue
		}
		var ev trace.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("trace: bad event %q: %w", sc.Bytes(), err)
		}
		if err := writeEvent(w, &ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// writeEvent prints one followed frame: when and where it entered, then
// its steps and verdict.
func writeEvent(w io.Writer, ev *trace.Event) error {
	where := ev.Port
	if ev.Network != "" {
		where = ev.Network + "/" + ev.Port
	}
	if _, err := fmt.Fprintf(w, "%s frame from %s\n", ev.Time.Format("15:04:05.000000"), where); err != nil {
		return err
	}
	if err := writeTrace(w, &datapath.TraceResult{Steps: ev.Steps, Verdict: ev.Verdict}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
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
