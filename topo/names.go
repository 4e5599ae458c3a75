package topo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// HostLinkName is the name of the host end of the veth of switch port port
// in instance instance: up to 6 characters of the instance name, a dash and
// 8 hex digits of a hash of both names ("lab-1a2b3c4d"). It fits the 15
// bytes of an interface name, is the same on every run (so leftovers are
// recognisable), differs between ports and instances, and can never be the
// uplink's "<name>-up". The link's alias (`ip link` shows it) is
// "uswitch <instance> <port>".
func HostLinkName(instance, port string) string {
	sum := sha256.Sum256([]byte(instance + "\x00" + port))
	p := []rune(instance)
	if len(p) > 6 {
		p = p[:6]
	}
	prefix := strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == '/' || r == ':' {
			return '_'
		}
		return r
	}, string(p))
	return prefix + "-" + hex.EncodeToString(sum[:4])
}

// hostLinkAlias is the IFLA_IFALIAS of a veth host end.
func hostLinkAlias(instance, port string) string {
	return fmt.Sprintf("uswitch %s %s", instance, port)
}
