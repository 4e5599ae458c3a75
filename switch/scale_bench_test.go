package vswitch

import (
	"fmt"
	"maps"
	"runtime"
	"testing"

	"github.com/uswitch-dev/uswitch/packet"
)

// largeFDB is the largest table of the scale benchmarks (SPEC: 1 M
// learned MACs).
const largeFDB = 1_000_000

// fillFDB puts n learned entries on port p into sw's settled map at once,
// as a fold would leave them, and returns their MACs and the heap they
// took. Learning them frame by frame copies the settled map at every fold
// (every foldSize new MACs), which for a million is minutes of copying;
// the benchmarks measure forwarding in a full table, not filling it.
func fillFDB(sw *Switch, p *Port, n int) ([]packet.MAC, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sw.mu.Lock()
	old := *sw.fdb.Load()
	fdb := make(map[fdbKey]*entry, len(old)+n)
	maps.Copy(fdb, old)
	now := sw.clock.Now()
	macs := make([]packet.MAC, n)
	for i := range n {
		m := floodMAC(i)
		macs[i] = m
		e := &entry{mac: m}
		e.port.Store(p)
		e.seen.Store(now)
		fdb[keyOf(0, m)] = e
	}
	sw.fdb.Store(&fdb)
	sw.learned.Add(int64(n))
	sw.mu.Unlock()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return macs, (after.HeapAlloc - before.HeapAlloc - uint64(n)*uint64(len(packet.MAC{})))
}

// BenchmarkSwitchForwardLargeFDB is BenchmarkSwitchForward with 1,000
// and with 1,000,000 more learned MACs in the FDB (BenchmarkSwitchForward's
// table holds two, which a Go map finds without hashing):
//   - flow: one known-unicast flow, as BenchmarkSwitchForward; reports
//     the heap an FDB entry takes;
//   - spread: each frame to another of the learned MACs (pseudo-random
//     order, the destination rewritten in place, 6 bytes), so that with a
//     million the lookups miss the CPU caches as traffic to that many
//     stations would.
func BenchmarkSwitchForwardLargeFDB(b *testing.B) {
	for _, n := range []int{1000, largeFDB} {
		b.Run(fmt.Sprintf("flow/entries=%d", n), func(b *testing.B) {
			sw, in, f := benchSetup(b)
			_, heap := fillFDB(sw, sw.Ports()[1], n)
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				sw.Input(in, f, packet.Offload{})
			}
			b.ReportMetric(float64(heap)/float64(n), "bytes/entry")
		})
		b.Run(fmt.Sprintf("spread/entries=%d", n), func(b *testing.B) {
			sw, in, f := benchSetup(b)
			macs, _ := fillFDB(sw, sw.Ports()[1], n)
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			i := 0
			for b.Loop() {
				copy(f[0:6], macs[(i*7919)%n][:])
				sw.Input(in, f, packet.Offload{})
				i++
			}
			if d := sw.Ports()[1].Stats.TxPackets.Load(); d < uint64(i) {
				b.Fatalf("%d of %d frames reached the learned port", d, i)
			}
		})
	}
}
