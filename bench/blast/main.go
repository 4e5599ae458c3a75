// Command blast is bench/scale.sh's frame source: it writes Ethernet frames
// to an interface through an AF_PACKET socket, frame i to (or, with
// -mode learn, from) station number (i*7919) mod -m, and prints what the
// run cost as JSON: {"frames", "wall_ns", "cpu_ns"} (its own user and
// system CPU time: for a kernel bridge, the whole path runs in the
// sender's system call). The stations' MACs are 06:xx:xx:xx:xx:xx, the
// same for every run, and the EtherType is 0x88b5 (local experimental),
// so a receiving namespace drops the frames before any protocol.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// station is the MAC of station number i.
func station(i int) packet.MAC {
	return packet.MACFromUint64(0x06<<40 | uint64(i+1)*0xbf58476d1ce4e5b9&(1<<40-1))
}

func main() {
	ifname := flag.String("if", "eth0", "interface to write to")
	n := flag.Int("n", 1_000_000, "frames")
	m := flag.Int("m", 1000, "stations")
	mode := flag.String("mode", "spread", "spread: from -mac to each station; learn: from each station to -mac")
	peer := flag.String("mac", "02:00:00:00:00:01", "the fixed end of every frame")
	pace := flag.Int("pace", 0, "sleep 1 ms after every this many frames (0: never), so a slower switch keeps up")
	flag.Parse()
	if err := run(*ifname, *n, *m, *mode, *peer, *pace); err != nil {
		fmt.Fprintln(os.Stderr, "blast:", err)
		os.Exit(1)
	}
}

func run(ifname string, n, m int, mode, peer string, pace int) error {
	if m < 1 || n < 0 || (mode != "spread" && mode != "learn") {
		return fmt.Errorf("need -m >= 1, -n >= 0 and -mode spread or learn")
	}
	fixed, err := packet.ParseMAC(peer)
	if err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		return fmt.Errorf("bind to %s: %w", ifname, err)
	}
	f := packet.Ethernet(make([]byte, 60))
	f.SetEtherType(0x88b5)
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	for i := range n {
		s := station((i * 7919) % m)
		if mode == "learn" {
			f.SetSrc(s)
			f.SetDst(fixed)
		} else {
			f.SetSrc(fixed)
			f.SetDst(s)
		}
		if _, err := unix.Write(fd, f); err != nil {
			return fmt.Errorf("write frame %d: %w", i, err)
		}
		if pace > 0 && i%pace == pace-1 {
			time.Sleep(time.Millisecond)
		}
	}
	wall := time.Since(t0)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano()
	return json.NewEncoder(os.Stdout).Encode(map[string]int64{"frames": int64(n), "wall_ns": wall.Nanoseconds(), "cpu_ns": cpu})
}
