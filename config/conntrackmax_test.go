package config

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConntrackMaxFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		ram  uint64
		want int
	}{
		{64 * mib, 1024},
		{512 * mib, 4096},
		{1024 * mib, 8192},
		{1025 * mib, 65536},
		{4096 * mib, 65536},
		{4097 * mib, 262144},
		{64 << 30, 262144},
	} {
		require.Equal(t, tc.want, conntrackMaxFor(tc.ram), "%d MiB", tc.ram/mib)
	}
}

// The default agrees with the kernel's own figure on this machine when the
// kernel has conntrack loaded (and nobody changed it); without nf_conntrack
// it is the kernel's sizing of this machine's memory as sysinfo reports it.
func TestDefaultConntrackMaxMatchesKernel(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		var si syscall.Sysinfo_t
		require.NoError(t, syscall.Sysinfo(&si))
		require.Equal(t, conntrackMaxFor(uint64(si.Totalram)*uint64(si.Unit)), DefaultConntrackMax())
		return
	}
	k, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.Equal(t, k, DefaultConntrackMax())
}
