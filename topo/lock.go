package topo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Lock makes sure only one process runs instance name at a time: it takes
// an exclusive flock on <StateDir>/<name>.lock and writes the pid into it.
// If another process holds it, Lock fails with `instance "NAME" is already
// running (pid N)`. unlock removes the file and releases the lock; a
// process that dies without it releases the lock, and its file stays for
// the next Lock to take.
//
// Removing the file races with a Lock that opened it just before: that
// Lock would then hold a lock on a file no longer at the path, beside a
// third process locking a new one. So unlock removes the file while it
// still holds the lock, and Lock, once it has the lock, checks that its
// file is still the one at the path, and starts again when it is not.
func Lock(name string, opt Options) (unlock func(), err error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("instance %q: %w", name, err)
	}
	if err := os.MkdirAll(opt.dir(), 0o755); err != nil {
		return nil, fmt.Errorf("instance %q: state dir: %w", name, err)
	}
	path := filepath.Join(opt.dir(), name+".lock")
	for {
		f, err := lockFile(name, path)
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue // removed by its holder's unlock in the meantime
		}
		if err := f.Truncate(0); err == nil {
			f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		var once sync.Once
		return func() {
			once.Do(func() {
				os.Remove(path)
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			})
		}, nil
	}
}

// lockFile opens path and takes its lock; it returns nil, nil when the
// file it locked is no longer the one at path.
func lockFile(name, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("instance %q: lock: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				return nil, fmt.Errorf("instance %q is already running (pid %d)", name, pid)
			}
			return nil, fmt.Errorf("instance %q is already running", name)
		}
		return nil, fmt.Errorf("instance %q: lock %s: %w", name, path, err)
	}
	at, err := stillAt(f, path)
	if err != nil || !at {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("instance %q: lock %s: %w", name, path, err)
		}
		return nil, nil
	}
	return f, nil
}

// stillAt reports whether f is the file at path (not one removed from it).
func stillAt(f *os.File, path string) (bool, error) {
	var held, at unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		return false, err
	}
	switch err := unix.Stat(path, &at); {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, err
	}
	return at.Ino == held.Ino && at.Dev == held.Dev, nil
}
