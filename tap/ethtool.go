package tap

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offloads is the state of the offload features that decide whether frames
// leaving an interface are complete: with any of them on, the other end of
// a veth may see CHECKSUM_PARTIAL frames (no valid L4 checksum yet) or
// TSO/GSO/GRO super-frames larger than the MTU.
type Offloads struct {
	TxChecksum    bool // tx-checksumming
	ScatterGather bool // scatter-gather
	TSO           bool // tcp-segmentation-offload
	GSO           bool // generic-segmentation-offload
	GRO           bool // generic-receive-offload
}

// ethtool legacy commands, in the order DisableOffloads turns them off:
// tx checksumming first, since TSO depends on it.
var offloadCmds = []struct {
	get, set uint32
	name     string
}{
	{unix.ETHTOOL_GTXCSUM, unix.ETHTOOL_STXCSUM, "tx-checksumming"},
	{unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO, "tcp-segmentation-offload"},
	{unix.ETHTOOL_GGSO, unix.ETHTOOL_SGSO, "generic-segmentation-offload"},
	{unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO, "generic-receive-offload"},
	{unix.ETHTOOL_GSG, unix.ETHTOOL_SSG, "scatter-gather"},
}

// DisableOffloads turns off tx checksumming, TSO, GSO, GRO and
// scatter-gather on the interface ifname of the calling thread's network
// namespace (what `ethtool -K IF tx off sg off tso off gso off gro off`
// does), so every frame the interface transmits is a complete, MTU-sized
// frame with valid checksums. Run it on the namespace side of a veth whose
// host end is read with a Packet socket. Features the driver cannot change
// are skipped.
//
// Callers that switch namespaces must lock the OS thread around the call.
func DisableOffloads(ifname string) error {
	return withEthtool(ifname, func(fd int) error {
		for _, c := range offloadCmds {
			err := ethtoolValue(fd, ifname, c.set, 0, nil)
			if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("ethtool %s: %s off: %w", ifname, c.name, err)
			}
		}
		return nil
	})
}

// GetOffloads reports the offload features of ifname in the calling
// thread's network namespace (what `ethtool -k IF` shows).
func GetOffloads(ifname string) (Offloads, error) {
	var o Offloads
	err := withEthtool(ifname, func(fd int) error {
		dst := []*bool{&o.TxChecksum, &o.TSO, &o.GSO, &o.GRO, &o.ScatterGather}
		for i, c := range offloadCmds {
			var v uint32
			if err := ethtoolValue(fd, ifname, c.get, 0, &v); err != nil {
				if errors.Is(err, unix.EOPNOTSUPP) {
					continue
				}
				return fmt.Errorf("ethtool %s: get %s: %w", ifname, c.name, err)
			}
			*dst[i] = v != 0
		}
		return nil
	})
	return o, err
}

func withEthtool(ifname string, fn func(fd int) error) error {
	if len(ifname) == 0 || len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("ethtool: invalid interface name %q", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool %s: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	return fn(fd)
}

// ifreqData is struct ifreq with ifr_data set (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValue issues one SIOCETHTOOL command carrying a struct
// ethtool_value; for a get command the result is stored in *out.
func ethtoolValue(fd int, ifname string, cmd, data uint32, out *uint32) error {
	val := &struct{ cmd, data uint32 }{cmd, data}
	ifr := &ifreqData{data: unsafe.Pointer(val)}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	runtime.KeepAlive(val)
	if errno != 0 {
		return errno
	}
	if out != nil {
		*out = val.data
	}
	return nil
}
