// Package nsthread owns running code inside a network namespace: setns
// switches only the calling OS thread, so the code runs on a goroutine
// locked to its thread, and the thread goes back to the pool only once it
// is switched back to where it started. Sockets made inside keep their
// namespace for life, so a caller can make them here and use them anywhere.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package nsthread

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Open returns a handle to the `ip netns` namespace name
// (/var/run/netns/NAME); the caller closes it.
func Open(name string) (netns.NsHandle, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return netns.None(), fmt.Errorf("invalid netns name %q", name)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %q: %w", name, err)
	}
	return h, nil
}

// Switched runs enter and then fn on a locked OS thread, then switches the
// thread back to the namespace it started in. Only if that fails is the
// thread left locked, so that the runtime ends it (or, for the main thread,
// parks it for good) instead of letting other goroutines run in the wrong
// namespace. Simply discarding every switched thread is not enough: the
// main thread cannot exit, and a parked main thread would keep the
// namespace alive and make /proc/PID/net show it.
func Switched(enter, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		err = enter()
		if err == nil {
			err = fn()
		}
		if rerr := netns.Set(orig); rerr != nil {
			ch <- errors.Join(err, fmt.Errorf("return to the original netns: %w", rerr))
			return // still locked: the thread is not reused
		}
		runtime.UnlockOSThread()
		ch <- err
	}()
	return <-ch
}

// In runs fn on a thread switched into ns; when ns is not open, fn runs
// on the calling goroutine, in the current namespace.
func In(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	return Switched(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return nil
	}, fn)
}
