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
// running (pid N)`. The lock is released by unlock or when the process
// dies; the lock file itself stays (removing it would race with the next
// Lock).
func Lock(name string, opt Options) (unlock func(), err error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("instance %q: %w", name, err)
	}
	if err := os.MkdirAll(opt.dir(), 0o755); err != nil {
		return nil, fmt.Errorf("instance %q: state dir: %w", name, err)
	}
	path := filepath.Join(opt.dir(), name+".lock")
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
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Truncate(0)
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
		})
	}, nil
}
