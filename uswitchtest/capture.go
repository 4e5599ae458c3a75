package uswitchtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/uswitch-dev/uswitch/capture"
)

// Capture is a pcap file being written of what one port saw, both
// directions, as `uswitch capture` writes it.
type Capture struct {
	path   string
	sub    *capture.Subscription
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Capture starts writing what port ("web", "api/eth1", "gw/front",
// "uplink") sees to a pcap file in t.ArtifactDir() (kept with go test
// -artifacts, removed with the test otherwise; after Start, a temporary
// directory removed by Close). The file is complete once Stop has
// returned; Close stops it too. A capture that cannot start fails the test.
func (n *Network) Capture(port string) *Capture {
	sub, err := n.dp.Capture().Subscribe(capture.Filter{Port: port})
	if err != nil {
		n.fail("capture %q: %v", port, err)
	}
	dir, err := n.artifactDir()
	if err != nil {
		sub.Close()
		n.fail("capture %q: %v", port, err)
	}
	path := filepath.Join(dir, strings.ReplaceAll(port, "/", "_")+".pcap")
	f, err := os.Create(path)
	if err != nil {
		sub.Close()
		n.fail("capture %q: %v", port, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Capture{path: path, sub: sub, cancel: cancel, done: make(chan error, 1)}
	go func() {
		w := bufio.NewWriter(f)
		err := sub.WritePcap(ctx, w)
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		c.done <- err
	}()
	n.mu.Lock()
	n.captures = append(n.captures, c)
	n.mu.Unlock()
	return c
}

// artifactDir is where captures go.
func (n *Network) artifactDir() (string, error) {
	if n.t != nil {
		return n.t.ArtifactDir(), nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.tmp == "" {
		dir, err := os.MkdirTemp("", "uswitchtest-")
		if err != nil {
			return "", err
		}
		n.tmp = dir
	}
	return n.tmp, nil
}

// Path returns the pcap file's path.
func (c *Capture) Path() string { return c.path }

// Frames returns how many frames were written so far.
func (c *Capture) Frames() uint64 { return c.sub.Captured() }

// Stop writes the frames the port has seen so far, closes the file and
// returns the first error met writing it. Calling it again returns the same.
func (c *Capture) Stop() error {
	c.once.Do(func() {
		// Let the writer empty the queue of what was seen before Stop.
		for deadline := time.Now().Add(time.Second); c.sub.Pending() > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		c.cancel()
		c.err = <-c.done
		c.sub.Close()
		if c.err != nil {
			c.err = fmt.Errorf("%s: %w", c.path, c.err)
		}
	})
	return c.err
}
