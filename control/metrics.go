package control

import "github.com/prometheus/client_golang/prometheus"

// collector reads the backend's counters at scrape time, so the datapath
// keeps a single set of counters and pays nothing between scrapes.
type collector struct {
	b Backend

	rxPackets, rxBytes *prometheus.Desc
	txPackets, txBytes *prometheus.Desc
	drops              *prometheus.Desc
	fdbEntries         *prometheus.Desc
	learnRefused       *prometheus.Desc
}

func newCollector(b Backend) *collector {
	port := []string{"port", "network"}
	return &collector{
		b:            b,
		rxPackets:    prometheus.NewDesc("uswitch_port_rx_packets_total", "Frames received on a switch port.", port, nil),
		rxBytes:      prometheus.NewDesc("uswitch_port_rx_bytes_total", "Bytes received on a switch port.", port, nil),
		txPackets:    prometheus.NewDesc("uswitch_port_tx_packets_total", "Frames sent on a switch port.", port, nil),
		txBytes:      prometheus.NewDesc("uswitch_port_tx_bytes_total", "Bytes sent on a switch port.", port, nil),
		drops:        prometheus.NewDesc("uswitch_port_drops_total", "Frames dropped on a switch port, by reason.", []string{"port", "network", "reason"}, nil),
		fdbEntries:   prometheus.NewDesc("uswitch_fdb_entries", "Live entries in a network's MAC learning table.", []string{"network"}, nil),
		learnRefused: prometheus.NewDesc("uswitch_fdb_learn_refused_total", "New MACs not learned because the network's table was full.", []string{"network"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops, c.fdbEntries, c.learnRefused} {
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
		ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(len(sw.Entries())), sw.Name())
		counter(c.learnRefused, sw.LearnRefused.Load(), sw.Name())
	}
}
