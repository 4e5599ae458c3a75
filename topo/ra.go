package topo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vishvananda/netns"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// refuseRA sets accept_ra=0 on the interface ifname of namespace ns, so
// that a router advertisement an endpoint forges (Docker's CVE-2020-13401)
// configures no address or default route in another, whatever the switch's
// RA guard lets through. A kernel without IPv6 has nothing to refuse.
func refuseRA(ns netns.NsHandle, ifname string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", ifname, "accept_ra")
	err := nsthread.In(ns, func() error { return os.WriteFile(path, []byte("0\n"), 0o644) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: accept_ra=0: %w", ifname, err)
	}
	return nil
}
