package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
)

const topSynopsis = "[-d SECONDS] [-n COUNT] [-b] " + instanceSynopsis

func cmdTop(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return top(ctx, args, os.Stdout)
}

// topSample is what `uswitch top` reads from the instance once a refresh.
type topSample struct {
	at    time.Time
	ports []datapath.PortInfo
	fdb   map[string]int // entries per network
	conns int            // connections in the table
}

// topRate is one port's line: rates over the last interval, drops in total
// and over the interval, by reason.
type topRate struct {
	port, network string
	rxPPS, txPPS  float64
	rxBPS, txBPS  float64           // bits per second
	drops         map[string]uint64 // since the port was attached
	dropsPS       float64           // all reasons
}

// top is `uswitch top`: per port rx/tx packets and bits per second and
// drops by reason, FDB and conntrack sizes, refreshed every interval (in
// batch mode, -b, printed one after the other instead of redrawn).
func top(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("top", topSynopsis)
	var f inspectFlags
	f.registerInstance(fs)
	interval := fs.Float64("d", 1, "refresh every `SECONDS`")
	count := fs.Int("n", 0, "stop after `COUNT` refreshes (0: until interrupted)")
	batch := fs.Bool("b", false, "batch mode: print each refresh after the last instead of redrawing the terminal")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *interval < 0.1 {
		return flagError(fs, fmt.Errorf("-d %v: the interval is at least 0.1 seconds", *interval))
	}
	if *count < 0 {
		return flagError(fs, fmt.Errorf("-n %d: want a positive number of refreshes (0: until interrupted)", *count))
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	prev, err := sampleTop(ctx, c)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Duration(*interval * float64(time.Second)))
	defer tick.Stop()
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := sampleTop(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !*batch {
			if _, err := io.WriteString(w, "\x1b[H\x1b[2J"); err != nil { // home, clear
				return err
			}
		}
		if err := writeTop(w, c.Socket(), cur, topRates(prev, cur)); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// sampleTop reads the ports, then the FDB and conntrack sizes from
// /metrics: counts the instance keeps (vswitch.Switch.Len), so that a
// refresh costs the same with a million stations as with ten, instead of
// listing every FDB entry.
func sampleTop(ctx context.Context, c *control.Client) (*topSample, error) {
	s := &topSample{at: time.Now()}
	if err := getJSON(ctx, c, "/v1/ports", &s.ports); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	body, err := c.Stream(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	s.conns, s.fdb, err = topSizes(body)
	return s, err
}

// topSizes reads, from a Prometheus text exposition, the unlabelled gauge
// uswitch_conntrack_entries and uswitch_fdb_entries by network (networks
// with no entries left out, as a listing would leave them).
func topSizes(r io.Reader) (conns int, fdb map[string]int, err error) {
	const connName, fdbName = "uswitch_conntrack_entries", "uswitch_fdb_entries"
	fdb = map[string]int{}
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, connName+" "); ok {
			if conns, err = gaugeValue(connName, v); err != nil {
				return 0, nil, err
			}
			found = true
		} else if v, ok := strings.CutPrefix(line, fdbName+`{network=`); ok {
			labels, v, ok := strings.Cut(v, "} ")
			if !ok {
				return 0, nil, fmt.Errorf("metric %s: malformed line %q", fdbName, line)
			}
			network, err := strconv.Unquote(labels) // Prometheus escapes as Go does: \\, \", \n
			if err != nil {
				return 0, nil, fmt.Errorf("metric %s: label in %q: %w", fdbName, line, err)
			}
			n, err := gaugeValue(fdbName, v)
			if err != nil {
				return 0, nil, err
			}
			if n > 0 {
				fdb[network] = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, nil, fmt.Errorf("reading /metrics: %w", err)
	}
	if !found {
		return 0, nil, fmt.Errorf("/metrics has no %s", connName)
	}
	return conns, fdb, nil
}

// gaugeValue parses a sample's value.
func gaugeValue(name, v string) (int, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return 0, fmt.Errorf("metric %s: %q: %w", name, v, err)
	}
	return int(f), nil
}

// topRates computes each port's rates between two samples. A port new in
// cur, or whose counters went back (it was re-attached), starts from zero.
func topRates(prev, cur *topSample) []topRate {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = 1
	}
	before := map[string]datapath.PortInfo{}
	for _, p := range prev.ports {
		before[p.Network+"/"+p.Name] = p
	}
	rate := func(now, then uint64) float64 {
		if now < then {
			return 0
		}
		return float64(now-then) / dt
	}
	out := make([]topRate, 0, len(cur.ports))
	for _, p := range cur.ports {
		b := before[p.Network+"/"+p.Name]
		r := topRate{port: p.Name, network: p.Network, drops: p.Drops,
			rxPPS: rate(p.RxPackets, b.RxPackets), txPPS: rate(p.TxPackets, b.TxPackets),
			rxBPS: 8 * rate(p.RxBytes, b.RxBytes), txBPS: 8 * rate(p.TxBytes, b.TxBytes)}
		for reason, n := range p.Drops {
			r.dropsPS += rate(n, b.Drops[reason])
		}
		out = append(out, r)
	}
	return out
}

// writeTop prints one refresh: a summary line, then a line per port.
func writeTop(w io.Writer, instance string, s *topSample, rates []topRate) error {
	nets := make([]string, 0, len(s.fdb))
	for n, c := range s.fdb {
		nets = append(nets, fmt.Sprintf("%s %d", n, c))
	}
	sort.Strings(nets)
	fdb := strings.Join(nets, ", ")
	if fdb == "" {
		fdb = "empty"
	}
	if _, err := fmt.Fprintf(w, "uswitch top  %s  %s\nconnections %d   fdb: %s\n\n", instance, s.at.Format("15:04:05"), s.conns, fdb); err != nil {
		return err
	}
	t := newTable("PORT", "NETWORK", "RX PPS>", "RX BPS>", "TX PPS>", "TX BPS>", "DROPS/S>", "DROPS")
	for _, r := range rates {
		network := r.network
		if network == "" {
			network = "-"
		}
		t.add(r.port, network, fmtRate(r.rxPPS, ""), fmtRate(r.rxBPS, "b"), fmtRate(r.txPPS, ""), fmtRate(r.txBPS, "b"),
			fmtRate(r.dropsPS, ""), dropText(r.drops))
	}
	return t.write(w)
}

// fmtRate prints a rate with a k, M or G prefix, like 12.5k or 940Mb.
func fmtRate(v float64, unit string) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1fG%s", v/1e9, unit)
	case v >= 1e6:
		return fmt.Sprintf("%.1fM%s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk%s", v/1e3, unit)
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

// dropText lists drop counters by reason, most first: "isolated=3 ttl-exceeded=1".
func dropText(drops map[string]uint64) string {
	if len(drops) == 0 {
		return "-"
	}
	reasons := make([]string, 0, len(drops))
	for r := range drops {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if drops[reasons[i]] != drops[reasons[j]] {
			return drops[reasons[i]] > drops[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s=%d", r, drops[r])
	}
	return strings.Join(parts, " ")
}
