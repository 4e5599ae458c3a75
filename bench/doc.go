// Package bench holds uswitch's performance measurements: net.sh compares
// TCP throughput and ping round-trip time between two namespaces through
// uswitch and through a kernel veth+bridge in the same run, and the Go
// benchmarks of each fast path live beside the code they measure
// (`make bench`).
package bench
