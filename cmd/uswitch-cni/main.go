// Command uswitch-cni is a CNI plugin (spec 1.1.0; 0.4.0 and 1.0.0
// configurations accepted) that attaches a container's network namespace
// to a network of a running uswitch instance through its control API:
//
//	{"cniVersion":"1.1.0","name":"mynet","type":"uswitch-cni",
//	 "instance":"lab","network":"front","capabilities":{"portMappings":true}}
//
// ADD asks the instance for an endpoint named cni-<first 12 characters of
// the container ID> (with /IFNAME when the interface is not eth0) with
// CNI_IFNAME in CNI_NETNS, and prints its interface, address, default
// route and DNS server as the result. DEL removes it, CHECK verifies it,
// STATUS says whether the instance answers, GC removes attachments the
// runtime no longer knows. docs/cni.md describes the configuration keys.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// version is set at build time with -ldflags "-X main.version=...", as for uswitch.
var version = "dev"

// supported are the CNI versions whose configurations the plugin accepts.
var supported = cniversion.PluginSupports("0.4.0", "1.0.0", "1.1.0")

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, supported, "CNI plugin uswitch-cni "+version)
}
