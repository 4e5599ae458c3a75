// Package clock owns datapath time: a coarse monotonic clock cheap enough to
// read for every frame, a fake clock that tests move by hand, and Duration,
// which JSON shows as "300s".
//
// Times are nanoseconds on an arbitrary monotonic scale; only differences
// mean anything.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package clock

import (
	"sync/atomic"
	"time"
)

// Clock returns monotonic nanoseconds.
type Clock interface {
	Now() int64
}

// Coarse is a clock whose reading is refreshed by a background ticker, so a
// read is one atomic load instead of a clock syscall or vDSO call.
type Coarse struct {
	t    atomic.Int64
	stop chan struct{}
}

var epoch = time.Now()

// NewCoarse starts a clock refreshed every resolution. Stop ends its ticker.
func NewCoarse(resolution time.Duration) *Coarse {
	c := &Coarse{stop: make(chan struct{})}
	c.t.Store(int64(time.Since(epoch)))
	go func() {
		t := time.NewTicker(resolution)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.t.Store(int64(time.Since(epoch)))
			case <-c.stop:
				return
			}
		}
	}()
	return c
}

// Now returns the last refreshed reading.
func (c *Coarse) Now() int64 { return c.t.Load() }

// Stop ends the refresh goroutine.
func (c *Coarse) Stop() { close(c.stop) }

// Fake is a clock that only moves when told to. The zero value reads 0.
type Fake struct{ t atomic.Int64 }

// Now returns the current fake time.
func (f *Fake) Now() int64 { return f.t.Load() }

// Advance moves the fake time forward by d.
func (f *Fake) Advance(d time.Duration) { f.t.Add(int64(d)) }
