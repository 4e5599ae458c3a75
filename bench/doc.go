// Package bench holds uswitch's side-by-side measurement: net.sh (`make
// bench-net`) builds the same topologies on the kernel (veth+bridge, a
// router namespace, iptables MASQUERADE), on Open vSwitch's userspace
// datapath with userspace TSO (L2 only: ovsdb-server and ovs-vswitchd of
// its own, in a namespace of its own, TAP ports moved into the endpoint
// namespaces) and on two uswitch instances (the default, busy-poll; the
// same with the CPU latency request, --cpu-latency; EXTRA=1 adds reader
// goroutines and plain), and measures them RUNS times (default 5), the
// setups alternating within each run: TCP with 1 stream, 2 streams on one
// pair and 2 streams on two pairs, ping RTT back-to-back and paced, UDP
// 64-byte datagrams delivered and lost, routed and masqueraded TCP. It
// writes to RESULTS.md, with the date, machine and load, the median of
// each run's own ratio to the kernel with its spread and every run's
// ratios, uswitch's and OVS's CPU time per Gbit and per million
// datagrams (netreport.py makes the tables), and CPU profiles of the
// default instance over a TCP and a UDP measure, taken through the
// control API. bimodal.sh (`make bench-bimodal`) samples where the
// busy-poll thread, the iperf3 sender and the receiver run (tasks.py)
// over repeated single-stream runs, under placements it sets
// (RESULTS-bimodal.md). udploss.sh (`make bench-udploss`) follows 64-byte UDP
// datagrams through one instance and reads the counters along the path
// (the sender's TAP ring, uswitch's ports, the receiving socket) to show
// where they are lost (RESULTS-udploss.md). pingwake.sh (`make
// bench-pingwake`) times ping -A through the kernel bridge and uswitch with
// the pinger and the busy-poll thread placed on the CPUs in turn
// (RESULTS-limits.md). scale.sh (`make
// bench-scale`) measures the switch path end to end with a million
// stations learned, the kernel bridge beside uswitch (RESULTS-scale.md),
// with frames from blast (bench/blast). lib.sh holds the shell helpers the
// scripts source. The Go benchmarks of each fast path live
// beside the code they measure (`make bench`).
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package bench
