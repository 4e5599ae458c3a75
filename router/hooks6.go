package router

import (
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
)

// The conntrack and rule hooks of the IPv6 path. Until package nat tracks
// IPv6, they accept everything.

func prerouting6(ct *nat.Tracker, f *nat.Flow, ip packet.IPv6, in string) nat.Verdict {
	return nat.Verdict{Action: nat.Accept}
}

func filter6(ct *nat.Tracker, f *nat.Flow, h nat.Hook, out string) nat.Verdict {
	return nat.Verdict{Action: nat.Accept}
}

func postrouting6(ct *nat.Tracker, f *nat.Flow, ip packet.IPv6, out string, outAddr [16]byte) nat.Verdict {
	return nat.Verdict{Action: nat.Accept}
}

func output6(ct *nat.Tracker, ip packet.IPv6, out string) nat.Verdict {
	return nat.Verdict{Action: nat.Accept}
}
