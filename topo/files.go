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
	nf, err := t.netnsFiles(p, ep)
	if err != nil {
		return err
	}
	if err := t.record(nf.record); err != nil {
		return err
	}
	return nf.write()
}

// netnsFiles is what writeNetnsFiles makes for an endpoint: its
// /etc/netns/<ns> directory (newDir when it does not exist yet) and files.
type netnsFiles struct {
	dir    string
	newDir bool
	files  []struct{ path, content string }
}

// netnsFiles makes /etc/netns if needed and says what ep's files are.
func (t *Topology) netnsFiles(p *config.Plan, ep *config.Endpoint) (netnsFiles, error) {
	dir := filepath.Join(etcNetnsDir, ep.Netns)
	if err := t.mkdir(etcNetnsDir); err != nil {
		return netnsFiles{}, err
	}
	_, err := os.Stat(dir)
	return netnsFiles{dir: dir, newDir: errors.Is(err, fs.ErrNotExist), files: []struct{ path, content string }{
		{filepath.Join(dir, "hosts"), hostsFile(ep)},
		{filepath.Join(dir, "hostname"), ep.Name + "\n"},
		{filepath.Join(dir, "resolv.conf"), resolvConf(p, ep)},
	}}, nil
}

// record adds the directory (when it is new) and the files to s.
func (nf netnsFiles) record(s *State) {
	if nf.newDir {
		s.Dirs = append(s.Dirs, nf.dir)
	}
	for _, f := range nf.files {
		if !slices.Contains(s.Files, f.path) {
			s.Files = append(s.Files, f.path)
		}
	}
}

// unrecord takes back what record added.
func (nf netnsFiles) unrecord(s *State) {
	if nf.newDir {
		s.Dirs = slices.DeleteFunc(s.Dirs, func(d string) bool { return d == nf.dir })
	}
	s.Files = slices.DeleteFunc(s.Files, func(f string) bool {
		return slices.ContainsFunc(nf.files, func(g struct{ path, content string }) bool { return g.path == f })
	})
}

// write makes the directory and writes the files (recorded first).
func (nf netnsFiles) write() error {
	if nf.newDir {
		if err := os.Mkdir(nf.dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	for _, f := range nf.files {
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
