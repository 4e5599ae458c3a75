package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/router"
)

func cmdNeigh(args []string) error { return neigh(context.Background(), args, os.Stdout) }

// neigh is `uswitch neigh`: the router's ARP and IPv6 neighbour caches,
// like `ip neigh`.
func neigh(ctx context.Context, args []string, w io.Writer) error {
	var list []control.NeighEntry
	return inspect(ctx, "neigh", "/v1/neigh", args, w, &list, func() *table {
		t := newTable("IP", "DEV", "LLADDR", "STATE", "AGE>", "QUEUED>")
		for _, n := range list {
			mac := "-"
			if n.MAC != nil {
				mac = n.MAC.String()
			}
			t.add(n.IP.String(), n.Port, mac, n.State.String(), fmt.Sprintf("%.1fs", time.Duration(n.Age).Seconds()), strconv.Itoa(n.Queued))
		}
		return t
	})
}

func cmdRoutes(args []string) error { return routes(context.Background(), args, os.Stdout) }

// routes is `uswitch routes`: the routing table in `ip route` form.
func routes(ctx context.Context, args []string, w io.Writer) error {
	var list []router.Route
	return inspect(ctx, "routes", "/v1/routes", args, w, &list, func() *table {
		t := newTable("DST", "VIA", "DEV", "SCOPE", "SRC")
		for _, r := range list {
			dst := r.Prefix.String()
			if r.Prefix.Bits() == 0 {
				dst = "default"
			}
			via := r.Via
			if via == "" {
				via = "-"
			}
			t.add(dst, via, r.Port, r.Scope, r.Src.String())
		}
		return t
	})
}
