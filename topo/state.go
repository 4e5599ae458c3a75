package topo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultStateDir holds state and lock files when Options.StateDir is empty.
const DefaultStateDir = "/run/uswitch"

// Options configure Apply, Down and Lock.
type Options struct {
	StateDir string // default DefaultStateDir
	// Polled opens the TAPs with vnet headers and the veth packet sockets
	// out of the Go netpoller (tap.Polled), for a datapath that busy-polls
	// them. Plain TAPs are opened as always.
	Polled bool
	// VethRing reads the veth ports through a receive ring
	// (tap.PacketOptions.Ring).
	VethRing bool
	// VethQdiscBypass sends to the veth ports past their queueing
	// discipline (tap.PacketOptions.QdiscBypass).
	VethQdiscBypass bool
	// Queues is how many queues each TAP with vnet headers gets (one per
	// busy-poll loop): more than one makes multi-queue TAPs. 0 is 1.
	Queues int
}

func (o Options) dir() string {
	if o.StateDir == "" {
		return DefaultStateDir
	}
	return o.StateDir
}

// StatePath is the state file of instance name: <StateDir>/<name>.json.
func StatePath(name string, opt Options) string {
	return filepath.Join(opt.dir(), name+".json")
}

// State is what one instance made, as recorded in its state file. Every
// object is recorded before it is created, so the file may name objects
// that were never made; removing those is a no-op.
type State struct {
	Name  string    `json:"name"`
	PID   int       `json:"pid"`
	Netns []string  `json:"netns,omitempty"` // `ip netns` names (bind mounts in /var/run/netns)
	Links []LinkRef `json:"links,omitempty"` // links that outlive the process (veth host ends)
	Files []string  `json:"files,omitempty"` // files written (under /etc/netns)
	Dirs  []string  `json:"dirs,omitempty"`  // directories created (under /etc/netns), parents first
	// Plan is the running plan as a net.toml (config.Source), recorded
	// before each change: the next run re-attaches the endpoints it names
	// that still exist (Apply).
	Plan string `json:"plan,omitempty"`
}

// LinkRef names a link in a namespace ("" = the namespace uswitch runs in).
type LinkRef struct {
	Name  string `json:"name"`
	Netns string `json:"netns,omitempty"`
	// NetnsPath names a namespace by path instead (an attachment's, which
	// is not uswitch's: only the link in it is).
	NetnsPath string `json:"netns_path,omitempty"`
}

// handle returns a netlink handle in the link's namespace; gone is true
// when that namespace no longer exists (nor the link with it).
func (l LinkRef) handle() (h *netlink.Handle, done func(), gone bool, err error) {
	var ns netns.NsHandle
	switch {
	case l.NetnsPath != "":
		ns, err = netns.GetFromPath(l.NetnsPath)
	case l.Netns != "":
		ns, err = openNetns(l.Netns)
	default:
		return &netlink.Handle{}, func() {}, false, nil // the calling thread's
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, true, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, false, err
	}
	return nh, nh.Close, false, nil
}

func (s *State) hasNetns(name string) bool {
	return s != nil && slices.Contains(s.Netns, name)
}

func (s *State) hasLink(l LinkRef) bool {
	return s != nil && slices.Contains(s.Links, l)
}

// ReadState reads the state file of instance name; it returns nil, nil
// when there is none.
func ReadState(name string, opt Options) (*State, error) {
	path := StatePath(name, opt)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w (remove it by hand if it is not uswitch's)", path, err)
	}
	return &s, nil
}

// writeState writes s to path atomically (temporary file + rename), so a
// crash leaves either the old or the new state, never a torn one.
func writeState(path string, s *State) error {
	b, err := marshalState(s)
	if err != nil {
		return err
	}
	return writeStateFile(path, b)
}

// marshalState is the state file's content for s.
func marshalState(s *State) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeStateFile writes b to path atomically: a temporary file renamed over
// it.
func writeStateFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// Down removes what instance name made, as recorded in its state file, and
// then the state file. It works after the instance was killed (TAP devices
// died with it; namespaces, veth host ends and files did not). It is
// idempotent: without a state file there is nothing to do. Every object is
// attempted; the errors are joined.
//
// Down does not check that the instance is stopped: `uswitch down` should
// hold Lock(name) while calling it.
func Down(name string, opt Options) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("instance %q: %w", name, err)
	}
	s, err := ReadState(name, opt)
	if err != nil {
		return fmt.Errorf("instance %q: %w", name, err)
	}
	if s == nil {
		return nil
	}
	if err := teardown(s); err != nil {
		return fmt.Errorf("instance %q: %w", name, err)
	}
	if err := os.Remove(StatePath(name, opt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("instance %q: state file: %w", name, err)
	}
	return nil
}

// teardown removes everything s records, newest first: links (deleting a
// veth host end deletes its peer too), namespaces (the devices inside go
// with them), files, then directories. Objects already gone are fine.
func teardown(s *State) error {
	// Links, then namespaces, each removed by teardownWorkers goroutines
	// at once: a deletion mostly waits for the kernel (RCU grace
	// periods), and those waits overlap.
	errs := parallel(s.Links, func(l LinkRef) error {
		if err := deleteLink(l); err != nil {
			return fmt.Errorf("link %q: %w", l.Name, err)
		}
		return nil
	})
	errs = append(errs, parallel(s.Netns, func(n string) error {
		if err := deleteNetns(n); err != nil {
			return fmt.Errorf("netns %q: %w", n, err)
		}
		return nil
	})...)
	for _, f := range slices.Backward(s.Files) {
		if err := underEtcNetns(f); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range slices.Backward(s.Dirs) {
		if err := underEtcNetns(d); err != nil {
			errs = append(errs, err)
			continue
		}
		// A directory that is not empty holds someone else's files: leave it.
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// teardownWorkers is how many links or namespaces teardown removes at once.
const teardownWorkers = 8

// parallel calls fn for every item, teardownWorkers at a time, and returns
// the errors in the items' order.
func parallel[T any](items []T, fn func(T) error) []error {
	errs := make([]error, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(teardownWorkers, len(items)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = fn(items[i])
			}
		})
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

func isNotEmpty(err error) bool {
	return errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST)
}

// underEtcNetns guards teardown against a damaged state file: only paths
// in /etc/netns are ever removed.
func underEtcNetns(p string) error {
	c := filepath.Clean(p)
	if c != p || (c != etcNetnsDir && !strings.HasPrefix(c, etcNetnsDir+"/")) {
		return fmt.Errorf("state file names %q, which is not in %s: not removed", p, etcNetnsDir)
	}
	return nil
}

// linkExists reports whether the link is there (in its namespace, if that
// exists).
func linkExists(l LinkRef) bool {
	h, done, gone, err := l.handle()
	if gone || err != nil {
		return false
	}
	defer done()
	_, err = retryDump(func() (netlink.Link, error) { return h.LinkByName(l.Name) })
	return err == nil
}

// deleteLink deletes a link, if it still exists.
func deleteLink(l LinkRef) error {
	if err := validIfname(l.Name); err != nil {
		return err
	}
	h, done, gone, err := l.handle()
	if gone {
		return nil // the link went with its namespace
	}
	if err != nil {
		return err
	}
	defer done()
	link, err := h.LinkByName(l.Name)
	if err != nil {
		if isLinkNotFound(err) {
			return nil
		}
		return err
	}
	if err := h.LinkDel(link); err != nil && !isLinkNotFound(err) {
		return err
	}
	return nil
}
