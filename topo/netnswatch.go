package topo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatchNetns reports the endpoint namespaces of this topology that are
// deleted from outside (`ip netns del`) while the instance runs, calling
// gone with each one's name. Deleting the name does not end a namespace
// that a descriptor still holds, and a TAP's descriptor holds the
// namespace it was opened in: so the instance must let go of the ports in
// it (close their TAPs), as the kernel bridge loses a veth port when its
// peer's namespace goes. The watch is an inotify watch on the directory of
// `ip netns`'s bind mounts. stop ends it and returns once it has.
func (t *Topology) WatchNetns(log *slog.Logger, gone func(netns string)) (stop func(), err error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("watch %s: %w", netnsDir, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify: %w", netnsDir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, netnsDir, unix.IN_DELETE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", netnsDir, err)
	}
	// A non-blocking descriptor: os.File reads it through the netpoller,
	// and Close wakes the read.
	f := os.NewFile(uintptr(fd), "inotify:"+netnsDir)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					log.Warn("namespace watch", "dir", netnsDir, "err", err)
				}
				return
			}
			for _, name := range inotifyNames(buf[:n]) {
				if t.ownsNetns(name) {
					gone(name)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { f.Close() })
		wg.Wait()
	}, nil
}

// inotifyNames returns the file names of the inotify events in b.
func inotifyNames(b []byte) []string {
	var names []string
	for len(b) >= unix.SizeofInotifyEvent {
		nameLen := int(binary.NativeEndian.Uint32(b[unsafe.Offsetof(unix.InotifyEvent{}.Len):]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := slices.Index(name, 0); i >= 0 {
			name = name[:i] // the name is padded with NULs
		}
		names = append(names, string(name))
		b = b[end:]
	}
	return names
}

// ownsNetns reports whether name is a namespace this topology made and has
// not removed itself.
func (t *Topology) ownsNetns(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.closed && slices.Contains(t.st.Netns, name)
}
