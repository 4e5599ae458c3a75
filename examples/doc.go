// Package examples shows uswitch used as a library from another module, as
// a user's project would: its tests import only the public package
// uswitchtest (and the standard library), need no root, and run a whole
// network of endpoints, router, NAT and DNS inside `go test`.
package examples
