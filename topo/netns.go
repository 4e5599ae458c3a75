package topo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/nsthread"
)

// netnsDir is where `ip netns` keeps its bind mounts; etcNetnsDir is where
// `ip netns exec` finds the per-namespace files it bind-mounts over /etc.
const (
	netnsDir    = "/var/run/netns"
	etcNetnsDir = "/etc/netns"
)

// validName checks a name used as a file name (instance, namespace).
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid name %q", name)
	}
	return nil
}

// validIfname checks an interface name the way the kernel does.
func validIfname(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n\v\f\r\x00") {
		return fmt.Errorf("invalid interface name %q (1 to 15 bytes, no '/', ':' or spaces)", name)
	}
	return nil
}

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// netnsExists reports whether `ip netns list` would show name.
func netnsExists(name string) bool {
	_, err := os.Lstat(netnsPath(name))
	return err == nil
}

// openNetns returns a handle to the named namespace; the caller closes it.
func openNetns(name string) (netns.NsHandle, error) {
	if err := validName(name); err != nil {
		return netns.None(), err
	}
	h, err := netns.GetFromPath(netnsPath(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %q: %w", name, err)
	}
	return h, nil
}

// endpointNetns opens an endpoint's namespace: the runtime's path of an
// attachment, or the named one uswitch made.
func endpointNetns(ep *config.Endpoint) (netns.NsHandle, error) {
	if ep.IsAttachment() {
		return netns.GetFromPath(ep.NetnsPath)
	}
	return openNetns(ep.Netns)
}

// createNetns creates a named network namespace the way `ip netns add`
// does: an empty file in /var/run/netns bind-mounted from a new
// namespace's /proc/.../ns/net. It fails with fs.ErrExist if the name is
// taken.
func createNetns(name string) error {
	unshare := func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return nil
	}
	return bindNetns(name, func(path string) error {
		return nsthread.Switched(unshare, func() error {
			src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
			if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind mount %s: %w", path, err)
			}
			return nil
		})
	})
}

// aliasNetns makes name a second `ip netns` name of the namespace named
// target (a bind mount of its file), for container-mode endpoints. It fails
// with fs.ErrExist if name is taken.
func aliasNetns(name, target string) error {
	return bindNetns(name, func(path string) error {
		if err := unix.Mount(netnsPath(target), path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", netnsPath(target), path, err)
		}
		return nil
	})
}

// bindNetns makes the file /var/run/netns/name, failing with fs.ErrExist
// if it is taken, and has mount bind a namespace on it; the file goes
// again if that fails.
func bindNetns(name string, mount func(path string) error) error {
	if err := validName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	path := netnsPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := mount(path); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// deleteNetns removes a named namespace the way `ip netns del` does:
// unmount and remove the bind file. The namespace itself disappears once
// no process, socket or handle refers to it. A missing namespace is fine.
func deleteNetns(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := netnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// retryDump repeats a netlink dump that the kernel interrupted (the data
// changed while it was being read, so the result may be partial).
func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range 10 {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
