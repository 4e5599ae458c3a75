package vswitch

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// largeFDB is the largest table of the scale benchmarks (SPEC: 1 M
// learned MACs).
const largeFDB = 1_000_000

// fillFDB learns n MACs (floodMAC(0..n-1)) on port p the way traffic does
// (a broadcast frame from each, switched by Input) and returns the heap the
// table took per entry and the time learning took per MAC.
func fillFDB(tb testing.TB, sw *Switch, p *Port, n int) (bytesPerEntry float64, perMAC time.Duration) {
	var before, after runtime.MemStats
	f := frame(tb, floodMAC(0), packet.Broadcast)
	eth := packet.Ethernet(f)
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range n {
		eth.SetSrc(floodMAC(i))
		sw.Input(p, f, packet.Offload{})
	}
	perMAC = time.Since(start) / time.Duration(n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := sw.learned.Load(); got < int64(n) {
		tb.Fatalf("learned %d of %d MACs", got, n)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), perMAC
}

// BenchmarkSwitchForwardLargeFDB is BenchmarkSwitchForward with 1,000
// and with 1,000,000 more learned MACs in the FDB (BenchmarkSwitchForward's
// table holds two, which a Go map finds without hashing):
//   - flow: one known-unicast flow, as BenchmarkSwitchForward; reports
//     the heap an FDB entry takes and what learning cost per MAC;
//   - spread: each frame to another of the learned MACs (pseudo-random
//     order, the destination rewritten in place, 6 bytes), so that with a
//     million the lookups miss the CPU caches as traffic to that many
//     stations would. That miss is the floor: one load from a random
//     line of a table larger than the caches (the FDB's rows are in the
//     table, so it is one load, not a map bucket and then an entry);
//     BenchmarkMemoryLatency measures it on the machine.
func BenchmarkSwitchForwardLargeFDB(b *testing.B) {
	for _, n := range []int{1000, largeFDB} {
		b.Run(fmt.Sprintf("flow/entries=%d", n), func(b *testing.B) {
			sw, in, f := benchSetup(b)
			perEntry, perMAC := fillFDB(b, sw, sw.Ports()[1], n)
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				sw.Input(in, f, packet.Offload{})
			}
			b.ReportMetric(perEntry, "bytes/entry")
			b.ReportMetric(float64(perMAC.Nanoseconds()), "ns/learned")
		})
		b.Run(fmt.Sprintf("spread/entries=%d", n), func(b *testing.B) {
			sw, in, f := benchSetup(b)
			fillFDB(b, sw, sw.Ports()[1], n)
			eth := packet.Ethernet(f)
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			i := 0
			for b.Loop() {
				// floodMAC computes the MAC: no read of a table of
				// them, which would be a cache miss of its own.
				eth.SetDst(floodMAC((i * 7919) % n))
				sw.Input(in, f, packet.Offload{})
				i++
			}
			if d := sw.Ports()[1].Stats.TxPackets.Load(); d < uint64(i) {
				b.Fatalf("%d of %d frames reached the learned port", d, i)
			}
		})
	}
}

// BenchmarkSwitchLearn measures learning: each frame comes from a MAC the
// switch has not seen, on a table that grows from empty to b.N entries.
func BenchmarkSwitchLearn(b *testing.B) {
	sw, in, f := benchSetup(b)
	eth := packet.Ethernet(f)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		eth.SetSrc(floodMAC(i))
		sw.Input(in, f, packet.Offload{})
		i++
	}
}

// BenchmarkMemoryLatency is the floor of a lookup in a table larger than
// the caches: dependent loads, each from a random cache line of a 48 MiB
// array (the size of a 1 M-entry FDB), so each misses the caches and
// usually the TLB.
func BenchmarkMemoryLatency(b *testing.B) {
	const lines = 48 << 20 / 64
	perm := rand.Perm(lines)
	next := make([]int, lines*8) // one int per 64-byte line is used
	for i := range lines {
		next[perm[i]*8] = perm[(i+1)%lines] * 8
	}
	j := 0
	for b.Loop() {
		j = next[j]
	}
	runtime.KeepAlive(j)
}
