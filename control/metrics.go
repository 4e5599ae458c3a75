package control

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the backend's counters at scrape time, so the datapath
// keeps a single set of counters and pays nothing between scrapes.
type collector struct {
	b Backend

	rxPackets, rxBytes *prometheus.Desc
	txPackets, txBytes *prometheus.Desc
	drops              *prometheus.Desc
	fdbEntries         *prometheus.Desc
	learnRefused       *prometheus.Desc

	ctEntries, ctInserted, ctEarlyDrop, ctDrop, ctExpired *prometheus.Desc
	ctInsertFailed, ctReopened                            *prometheus.Desc
	fragReassembled, fragExpired                          *prometheus.Desc
	rulePackets, ruleBytes                                *prometheus.Desc
	pollPorts, pollSleeps, pollLifts                      *prometheus.Desc
	pollLoopFrames, pollLoopQueues                        *prometheus.Desc
}

func newCollector(b Backend) *collector {
	port := []string{"port", "network"}
	rule := []string{"hook", "rule"}
	return &collector{
		b:            b,
		rxPackets:    prometheus.NewDesc("uswitch_port_rx_packets_total", "Frames received on a switch port.", port, nil),
		rxBytes:      prometheus.NewDesc("uswitch_port_rx_bytes_total", "Bytes received on a switch port.", port, nil),
		txPackets:    prometheus.NewDesc("uswitch_port_tx_packets_total", "Frames sent on a switch port.", port, nil),
		txBytes:      prometheus.NewDesc("uswitch_port_tx_bytes_total", "Bytes sent on a switch port.", port, nil),
		drops:        prometheus.NewDesc("uswitch_port_drops_total", "Frames dropped on a switch port, by reason.", []string{"port", "network", "reason"}, nil),
		fdbEntries:   prometheus.NewDesc("uswitch_fdb_entries", "Live entries in a network's MAC learning table.", []string{"network"}, nil),
		learnRefused: prometheus.NewDesc("uswitch_fdb_learn_refused_total", "New MACs not learned because the network's table was full.", []string{"network"}, nil),

		ctEntries:   prometheus.NewDesc("uswitch_conntrack_entries", "Connections in the connection table.", nil, nil),
		ctInserted:  prometheus.NewDesc("uswitch_conntrack_inserted_total", "Connections added to the connection table.", nil, nil),
		ctEarlyDrop: prometheus.NewDesc("uswitch_conntrack_early_drop_total", "Connections not assured (unreplied, or a TCP handshake not completed) dropped to make room in a full table.", nil, nil),
		ctDrop:      prometheus.NewDesc("uswitch_conntrack_drop_total", "New connections refused because the table was full.", nil, nil),
		ctInsertFailed: prometheus.NewDesc("uswitch_conntrack_insert_failed_total",
			"New connections refused because their translated tuple could not be made unique (ct-clash).", nil, nil),
		ctReopened:      prometheus.NewDesc("uswitch_conntrack_reopened_total", "Connections in TIME_WAIT or CLOSE that a new SYN of the same tuple replaced.", nil, nil),
		fragReassembled: prometheus.NewDesc("uswitch_frag_reassembled_total", "IPv4 datagrams reassembled from fragments before conntrack.", nil, nil),
		fragExpired:     prometheus.NewDesc("uswitch_frag_expired_total", "IPv4 datagrams whose fragments did not all arrive within 30 s.", nil, nil),
		ctExpired:       prometheus.NewDesc("uswitch_conntrack_expired_total", "Connections removed after their timeout.", nil, nil),
		rulePackets:     prometheus.NewDesc("uswitch_rule_packets_total", "Packets a rule matched; rule is its 1-based position in the hook and its comment.", rule, nil),
		ruleBytes:       prometheus.NewDesc("uswitch_rule_bytes_total", "Bytes of the packets a rule matched; rule is its 1-based position in the hook and its comment.", rule, nil),
		pollPorts:       prometheus.NewDesc("uswitch_busy_poll_ports", "Ports the busy-poll thread serves (run --busy-poll).", nil, nil),
		pollSleeps:      prometheus.NewDesc("uswitch_busy_poll_sleeps_total", "Times the busy-poll thread stopped spinning and blocked, idle (run --busy-poll).", nil, nil),
		pollLifts:       prometheus.NewDesc("uswitch_busy_poll_lifts_total", "Times the watchdog lifted the starved busy-poll thread to normal priority (run --busy-poll).", nil, nil),
		pollLoopFrames:  prometheus.NewDesc("uswitch_busy_poll_loop_frames_total", "Frames each busy-poll thread read and carried (run --poll-threads).", []string{"loop"}, nil),
		pollLoopQueues:  prometheus.NewDesc("uswitch_busy_poll_loop_queues", "Port queues each busy-poll thread reads (run --poll-threads).", []string{"loop"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops, c.fdbEntries, c.learnRefused,
		c.ctEntries, c.ctInserted, c.ctEarlyDrop, c.ctDrop, c.ctExpired, c.ctInsertFailed, c.ctReopened,
		c.fragReassembled, c.fragExpired, c.rulePackets, c.ruleBytes, c.pollPorts, c.pollSleeps, c.pollLifts, c.pollLoopFrames, c.pollLoopQueues} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, p := range c.b.Ports() {
		counter(c.rxPackets, p.RxPackets, p.Name, p.Network)
		counter(c.rxBytes, p.RxBytes, p.Name, p.Network)
		counter(c.txPackets, p.TxPackets, p.Name, p.Network)
		counter(c.txBytes, p.TxBytes, p.Name, p.Network)
		for reason, n := range p.Drops {
			counter(c.drops, n, p.Name, p.Network, reason)
		}
	}
	for _, sw := range c.b.Networks() {
		ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(sw.Len()), sw.Name())
		counter(c.learnRefused, sw.LearnRefused.Load(), sw.Name())
	}
	if bp, ok := c.b.BusyPoll(); ok {
		ch <- prometheus.MustNewConstMetric(c.pollPorts, prometheus.GaugeValue, float64(bp.Ports))
		counter(c.pollSleeps, bp.Sleeps)
		counter(c.pollLifts, bp.Lifts)
		for i, l := range bp.Loops {
			loop := strconv.Itoa(i)
			counter(c.pollLoopFrames, l.Frames, loop)
			ch <- prometheus.MustNewConstMetric(c.pollLoopQueues, prometheus.GaugeValue, float64(l.Queues), loop)
		}
	}
	if r := c.b.Router(); r != nil {
		counter(c.fragReassembled, r.Defrag().Reassembled.Load())
		counter(c.fragExpired, r.Defrag().Expired.Load())
	}
	t := c.b.Tracker()
	if t == nil {
		return
	}
	if tb := t.Table; tb != nil {
		ch <- prometheus.MustNewConstMetric(c.ctEntries, prometheus.GaugeValue, float64(tb.Len()))
		counter(c.ctInserted, tb.Inserted.Load())
		counter(c.ctEarlyDrop, tb.EarlyDropped.Load())
		counter(c.ctDrop, tb.Dropped.Load())
		counter(c.ctExpired, tb.Expired.Load())
		counter(c.ctInsertFailed, tb.InsertFailed.Load())
		counter(c.ctReopened, tb.Reopened.Load())
	}
	if t.Rules != nil {
		for _, r := range t.Rules.List() {
			label := ruleLabel(r.Position, r.Comment)
			counter(c.rulePackets, r.Packets, r.Hook.String(), label)
			counter(c.ruleBytes, r.Bytes, r.Hook.String(), label)
		}
	}
}

// ruleLabel is the rule label of the uswitch_rule_* metrics for the n-th
// (from 1) rule of its hook, as `uswitch rules` lists them: "3: isolation".
// The position keeps rules with the same comment apart.
func ruleLabel(n int, comment string) string { return fmt.Sprintf("%d: %s", n, comment) }
