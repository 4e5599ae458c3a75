package topo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/uswitch-dev/uswitch/config"
)

// writeNetnsFiles writes /etc/netns/<ns>/hosts, hostname and resolv.conf;
// `ip netns exec` bind-mounts them over the files of the same name in /etc.
// Directories are recorded only if uswitch creates them.
func (t *Topology) writeNetnsFiles(p *config.Plan, ep *config.Endpoint) error {
	dir := filepath.Join(etcNetnsDir, ep.Netns)
	if err := t.mkdir(etcNetnsDir); err != nil {
		return err
	}
	files := []struct{ path, content string }{
		{filepath.Join(dir, "hosts"), hostsFile(ep)},
		{filepath.Join(dir, "hostname"), ep.Name + "\n"},
		{filepath.Join(dir, "resolv.conf"), resolvConf(p, ep)},
	}
	// One state file write records the directory (when it is new) and
	// the three files.
	_, err := os.Stat(dir)
	newDir := errors.Is(err, fs.ErrNotExist)
	if err := t.record(func(s *State) {
		if newDir {
			s.Dirs = append(s.Dirs, dir)
		}
		for _, f := range files {
			if !slices.Contains(s.Files, f.path) {
				s.Files = append(s.Files, f.path)
			}
		}
	}); err != nil {
		return err
	}
	if newDir {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates dir if it does not exist, recording it first.
func (t *Topology) mkdir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if err := t.record(func(s *State) { s.Dirs = append(s.Dirs, dir) }); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// hostsFile is the endpoint's /etc/hosts, like Docker's: the localhost
// lines, then each interface's address with the endpoint's name and
// aliases.
func hostsFile(ep *config.Endpoint) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	names := strings.Join(append([]string{ep.Name}, ep.Aliases...), " ")
	for _, ifc := range ep.Interfaces {
		if ifc.IP.IsValid() {
			fmt.Fprintf(&b, "%s\t%s\n", ifc.IP, names)
		}
	}
	return b.String()
}

// resolvConf names the gateway of each of the endpoint's networks that has
// the embedded DNS, in interface order. When none has, it names no server
// at all: the host's resolv.conf (often 127.0.0.53) is unreachable from the
// namespace and would make every lookup that misses the hosts file stall
// for seconds, while an empty one makes the resolver fail at once.
func resolvConf(p *config.Plan, ep *config.Endpoint) string {
	var b strings.Builder
	b.WriteString("# written by uswitch\n")
	var seen []string
	for _, ifc := range ep.Interfaces {
		n := p.Network(ifc.Network)
		if n == nil || !n.DNS || !ifc.Gateway.IsValid() || slices.Contains(seen, ifc.Gateway.String()) {
			continue
		}
		seen = append(seen, ifc.Gateway.String())
		fmt.Fprintf(&b, "nameserver %s\n", ifc.Gateway)
	}
	if len(seen) == 0 {
		b.WriteString("# no network of this endpoint has dns = true: no name server\n")
	}
	return b.String()
}
