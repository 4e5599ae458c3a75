package config

import "syscall"

// DefaultConntrackMax is the connection table size Linux gives
// nf_conntrack_max on this machine: one hash bucket per 16 KiB of memory,
// 262144 above 4 GiB (on 64-bit), 65536 above 1 GiB, at least 1024, with
// a maximum of one connection per bucket (the kernel's default since 5.15).
func DefaultConntrackMax() int {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 65536 // what the kernel gives a machine of 1 to 4 GiB
	}
	return conntrackMaxFor(uint64(si.Totalram) * uint64(si.Unit))
}

// conntrackMaxFor is nf_conntrack_init_start's sizing for ram bytes of
// memory.
func conntrackMaxFor(ram uint64) int {
	const gib = 1 << 30
	n := int(ram / 16384 / 8) // buckets of 8 bytes, one per 16 KiB
	switch {
	case ram > 4*gib:
		n = 262144
	case ram > gib:
		n = 65536
	}
	return max(n, 1024)
}
