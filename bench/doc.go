// Package bench holds uswitch's side-by-side measurement: net.sh (`make
// bench-net`) builds the same topologies on the kernel (veth+bridge, a
// router namespace, iptables MASQUERADE), on Open vSwitch's userspace
// datapath with userspace TSO (L2 only: ovsdb-server and ovs-vswitchd of
// its own, in a namespace of its own, TAP ports moved into the endpoint
// namespaces) and on four uswitch instances,
// one with offloads (vnet_hdr TAPs) and reader goroutines, the same with
// the busy-poll thread, the same with the busy-poll thread holding the CPU
// latency request (--cpu-latency), and one without offloads, and measures
// them in the same run: TCP with 1 and 2 streams, ping RTT back-to-back
// and paced, UDP 64-byte packets delivered, routed and masqueraded TCP. It
// prints each uswitch figure as a ratio of the kernel's, writes the table
// to RESULTS.md with the date and machine, and appends a CPU profile of
// each instance. udploss.sh (`make bench-udploss`) follows 64-byte UDP
// datagrams through one instance and reads the counters along the path
// (the sender's TAP ring, uswitch's ports, the receiving socket) to show
// where they are lost (RESULTS-udploss.md). scale.sh (`make
// bench-scale`) measures the switch path end to end with a million
// stations learned, the kernel bridge beside uswitch (RESULTS-scale.md),
// with frames from blast (bench/blast). lib.sh holds the shell helpers the
// scripts source. The Go benchmarks of each fast path live
// beside the code they measure (`make bench`).
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package bench
