package topo

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchUplink keeps the host's routes to the networks: the kernel flushes
// the routes through a link that goes down (`ip link set <name>-up down`)
// and, when it comes up again, puts back only the prefix route of its own
// address. So WatchUplink follows the uplink's host-side link with netlink
// (in the uplink's namespace) and, each time it comes up again, adds the
// route to every network of the running plan again, as Apply made them
// (AddNetworkRoutes), after host_address6, which the kernel removed with
// the link's other IPv6 addresses. Without an uplink, or without routes,
// it watches nothing. stop ends the watch and returns once it has.
func (t *Topology) WatchUplink(log *slog.Logger) (stop func(), err error) {
	u := t.Plan().Uplink
	if u == nil || !u.Routes {
		return func() {}, nil
	}
	opt := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { log.Warn("uplink watch", "link", u.HostDevice, "err", err) },
	}
	if u.Netns != "" {
		ns, err := openNetns(u.Netns)
		if err != nil {
			return nil, err
		}
		defer ns.Close() // the subscription's socket keeps the namespace
		opt.Namespace = &ns
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, opt); err != nil {
		return nil, fmt.Errorf("watch %s: %w", u.HostDevice, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up := true // as Apply left it
		for {
			select {
			case <-done:
				return
			case upd, ok := <-updates:
				if !ok {
					return
				}
				if upd.Attrs().Name != u.HostDevice {
					continue
				}
				now := upd.IfInfomsg.Flags&unix.IFF_UP != 0
				if now && !up {
					t.restoreRoutes(done, log)
				}
				up = now
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}, nil
}

// restoreRoutes adds host_address6 and the routes to the plan's networks
// again, retrying while the kernel has not yet put back the route to the
// uplink's own subnet that they go through.
func (t *Topology) restoreRoutes(done <-chan struct{}, log *slog.Logger) {
	p := t.Plan()
	if err := restoreAddress6(p.Uplink); err != nil {
		log.Warn("uplink up again: cannot restore host_address6", "err", err)
	}
	for _, n := range p.Networks {
		var err error
		for try := 0; try < 50; try++ {
			if err = t.AddNetworkRoutes(p, n); !errors.Is(err, syscall.ENETUNREACH) {
				break
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err != nil {
			log.Warn("uplink up again: cannot restore a route", "network", n.Name, "err", err)
		}
	}
	log.Info("uplink up again: host routes to the networks restored", "link", p.Uplink.HostDevice)
}
