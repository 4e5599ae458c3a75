package uring

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newRing sets up a small ring on the test's locked thread.
func newRing(t *testing.T, buffers uint32) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(Config{Entries: 8, CQEntries: 64, Buffers: buffers, BufSize: 256})
	if err != nil {
		t.Fatalf("New: %v", err) // the kernels this project runs on (6.7+) have everything
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func pipe(t *testing.T) (rd, wr int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// packets is a SOCK_SEQPACKET pair: every write is one read, like a TAP.
func packets(t *testing.T) (a, b int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// reap enters (waiting while nothing is ready, up to a deadline) and
// collects completions until n were seen.
func reap(t *testing.T, r *Ring, n int, keep func(Completion) bool) []Completion {
	t.Helper()
	var out []Completion
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d completions of %d after 10 s: %+v", len(out), n, out)
		}
		if err := r.Enter(false); err != nil {
			t.Fatal(err)
		}
		for c, ok := r.Next(); ok; c, ok = r.Next() {
			if keep == nil || keep(c) {
				if c.Data != nil {
					c.Data = bytes.Clone(c.Data)
				}
				out = append(out, c)
			}
			r.Release(&c)
		}
		if len(out) < n {
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

// arm arms a multishot read of fd and submits it.
func arm(t *testing.T, r *Ring, fd int, user uint64) {
	t.Helper()
	if err := r.ReadMultishot(fd, user); err != nil {
		t.Fatal(err)
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, fd int, b []byte) {
	t.Helper()
	if _, err := unix.Write(fd, b); err != nil {
		t.Fatal(err)
	}
}

func TestMultishotRead(t *testing.T) {
	r := newRing(t, 4)
	a, b := packets(t)
	arm(t, r, a, 7)
	// More frames than buffers: each is read into a buffer that comes back.
	for i := range 20 {
		msg := []byte(fmt.Sprintf("frame %d", i))
		write(t, b, msg)
		got := reap(t, r, 1, nil)
		c := got[0]
		if c.User != 7 || !c.More || !bytes.Equal(c.Data, msg) {
			t.Fatalf("frame %d: got %+v %q, want user 7, more, %q", i, c, c.Data, msg)
		}
	}
}

// TestReadyFlag: with deferred task work, data on an armed descriptor
// shows in the SQ ring's flags, without a system call.
func TestReadyFlag(t *testing.T) {
	r := newRing(t, 4)
	a, b := packets(t)
	arm(t, r, a, 1)
	for c, ok := r.Next(); ok; c, ok = r.Next() {
		t.Fatalf("unexpected completion %+v", c)
	}
	if r.Ready() {
		t.Fatal("Ready with nothing written")
	}
	write(t, b, []byte("x"))
	if !r.Ready() {
		t.Fatal("not Ready after a write to an armed descriptor")
	}
	got := reap(t, r, 1, nil)
	if string(got[0].Data) != "x" {
		t.Fatalf("got %+v", got[0])
	}
	if r.Ready() {
		t.Fatal("still Ready after reaping")
	}
}

// TestBatch: one Enter reads every frame waiting on every armed descriptor.
func TestBatch(t *testing.T) {
	r := newRing(t, 16)
	a1, b1 := packets(t)
	a2, b2 := packets(t)
	for i, fd := range []int{a1, a2} {
		if err := r.ReadMultishot(fd, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		write(t, b1, []byte{1, byte(i)})
		write(t, b2, []byte{2, byte(i)})
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	var n [3]int
	for c, ok := r.Next(); ok; c, ok = r.Next() {
		if int(c.Data[0]) != int(c.User) || int(c.Data[1]) != n[c.User] {
			t.Fatalf("port %d frame %d: got %v", c.User, n[c.User], c.Data)
		}
		n[c.User]++
		r.Release(&c)
	}
	if n[1] != 5 || n[2] != 5 {
		t.Fatalf("one Enter read %v frames, want 5 per descriptor", n)
	}
}

// TestNoBuffers: a read that finds no free buffer ends with -ENOBUFS, the
// frames stay queued, and re-arming reads them once buffers are back.
func TestNoBuffers(t *testing.T) {
	r := newRing(t, 2)
	a, b := packets(t)
	arm(t, r, a, 3)
	for i := range 4 {
		write(t, b, []byte{byte(i)})
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	var held []Completion
	ended := false
	for c, ok := r.Next(); ok; c, ok = r.Next() {
		switch {
		case c.Data != nil:
			held = append(held, c) // not released yet: the ring runs dry
		case c.Res == -int32(unix.ENOBUFS) && !c.More:
			ended = true
		default:
			t.Fatalf("unexpected %+v", c)
		}
	}
	if len(held) != 2 || !ended {
		t.Fatalf("read %d frames, ended %v; want 2 and -ENOBUFS", len(held), ended)
	}
	for i := range held {
		if held[i].Data[0] != byte(i) {
			t.Fatalf("frame %d: %v", i, held[i].Data)
		}
		r.Release(&held[i])
		r.Release(&held[i]) // twice: no effect
	}
	if err := r.ReadMultishot(a, 3); err != nil {
		t.Fatal(err)
	}
	got := reap(t, r, 2, nil)
	for i, c := range got {
		if c.Data[0] != byte(i+2) || !c.More {
			t.Fatalf("after re-arm, frame %d: %+v", i+2, c)
		}
	}
}

// TestCancel: a cancelled read ends with -ECANCELED, and a descriptor
// closed while armed stays readable by the ring until the cancel (the
// request holds the file), which is why callers cancel before closing.
func TestCancel(t *testing.T) {
	r := newRing(t, 4)
	a, b := packets(t)
	dup, err := unix.Dup(a)
	if err != nil {
		t.Fatal(err)
	}
	arm(t, r, dup, 5)
	unix.Close(dup)
	write(t, b, []byte("after close"))
	got := reap(t, r, 1, nil)
	if string(got[0].Data) != "after close" {
		t.Fatalf("got %+v", got[0])
	}
	if err := r.Cancel(5, 6); err != nil {
		t.Fatal(err)
	}
	got = reap(t, r, 2, nil)
	var cancelled, counted bool
	for _, c := range got {
		switch {
		case c.User == 5 && c.Res == -int32(unix.ECANCELED) && !c.More:
			cancelled = true
		case c.User == 6 && c.Res == 1:
			counted = true
		}
	}
	if !cancelled || !counted {
		t.Fatalf("cancel: %+v", got)
	}
	if err := r.Cancel(5, 6); err != nil {
		t.Fatal(err)
	}
	got = reap(t, r, 1, nil)
	if got[0].Res != 0 {
		t.Fatalf("second cancel: %+v, want 0 cancelled", got[0])
	}
}

// TestEOF: the writer's end closing ends the read with 0 bytes.
func TestEOF(t *testing.T) {
	r := newRing(t, 4)
	rd, wr := pipe(t)
	if err := r.ReadMultishot(rd, 9); err != nil {
		t.Fatal(err)
	}
	write(t, wr, []byte("abc"))
	got := reap(t, r, 1, nil)
	if string(got[0].Data) != "abc" {
		t.Fatalf("got %+v", got[0])
	}
	unix.Close(wr)
	got = reap(t, r, 1, nil)
	if got[0].Res != 0 || got[0].More || got[0].Data != nil {
		t.Fatalf("at EOF: %+v", got[0])
	}
}

// TestBadFD: arming a descriptor that is not open completes with -EBADF.
func TestBadFD(t *testing.T) {
	r := newRing(t, 4)
	rd, _ := pipe(t)
	unix.Close(rd)
	if err := r.ReadMultishot(rd, 4); err != nil {
		t.Fatal(err)
	}
	got := reap(t, r, 1, nil)
	if got[0].Res != -int32(unix.EBADF) || got[0].More {
		t.Fatalf("got %+v", got[0])
	}
}

// TestPollWake: a multishot poll on an eventfd completes on every write,
// and Enter(true) waits for it.
func TestPollWake(t *testing.T) {
	r := newRing(t, 4)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := r.PollMultishot(efd, 11); err != nil {
		t.Fatal(err)
	}
	if err := r.Enter(false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		go func() {
			time.Sleep(5 * time.Millisecond)
			var one [8]byte
			one[0] = 1
			unix.Write(efd, one[:])
		}()
		if err := r.Enter(true); err != nil {
			t.Fatal(err)
		}
		c, ok := r.Next()
		for ok && c.User != 11 {
			c, ok = r.Next()
		}
		if !ok || !c.More || c.Res&unix.POLLIN == 0 {
			t.Fatalf("poll: %+v %v", c, ok)
		}
		var v [8]byte
		unix.Read(efd, v[:])
	}
}

// TestBadCompletions: completions the kernel should never post (a buffer
// id out of range, a buffer with an error, a length beyond the buffer)
// carry no data, and every buffer is given back exactly once.
func TestBadCompletions(t *testing.T) {
	r := newRing(t, 4)
	inject := r.completion
	for _, e := range []cqe{
		{userData: 1, res: 10, flags: cqeFBuffer | 99<<cqeBufferShift},
		{userData: 1, res: 10, flags: cqeFBuffer | 0xffff<<cqeBufferShift},
		{userData: 1, res: -5, flags: cqeFBuffer},
		{userData: 1, res: 1 << 30, flags: cqeFBuffer | 1<<cqeBufferShift},
		{userData: 1, res: 10},
	} {
		c := inject(e)
		if c.Data != nil {
			t.Errorf("%+v: data %v", e, c.Data)
		}
		r.Release(&c)
		r.Release(&c)
	}
	// Every buffer is still in use exactly once: 4 frames fit.
	a, b := packets(t)
	if err := r.ReadMultishot(a, 2); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		write(t, b, []byte{byte(i)})
	}
	got := reap(t, r, 4, func(c Completion) bool { return c.User == 2 })
	for i, c := range got {
		if len(c.Data) != 1 || c.Data[0] != byte(i) {
			t.Fatalf("frame %d: %+v", i, c)
		}
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{{}, {Entries: 3, CQEntries: 8, Buffers: 4, BufSize: 1}, {Entries: 8, CQEntries: 4, Buffers: 4, BufSize: 1}, {Entries: 8, CQEntries: 8, Buffers: 1 << 16, BufSize: 1}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

// TestOtherThread: the ring refuses submissions from another thread
// (single issuer) with an error, not a crash.
func TestOtherThread(t *testing.T) {
	r := newRing(t, 4)
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- r.Enter(false)
	}()
	if err := <-errc; !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Enter from another thread: %v, want EEXIST", err)
	}
}

func TestReleaseAllocs(t *testing.T) {
	r := newRing(t, 4)
	a, b := packets(t)
	arm(t, r, a, 1)
	msg := []byte("frame")
	n := testing.AllocsPerRun(100, func() {
		unix.Write(b, msg)
		for !r.Ready() {
		}
		r.Enter(false)
		for c, ok := r.Next(); ok; c, ok = r.Next() {
			r.Release(&c)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per frame", n)
	}
}

// FuzzCompletion: whatever a completion holds, it never panics, and data
// stays inside its buffer.
func FuzzCompletion(f *testing.F) {
	f.Add(uint64(1), int32(10), uint32(cqeFBuffer|cqeFMore))
	f.Add(uint64(1), int32(-105), uint32(0))
	f.Add(uint64(1), int32(300), uint32(cqeFBuffer|3<<cqeBufferShift))
	runtime.LockOSThread()
	r, err := New(Config{Entries: 8, CQEntries: 64, Buffers: 4, BufSize: 256})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close(); runtime.UnlockOSThread() })
	f.Fuzz(func(t *testing.T, user uint64, res int32, flags uint32) {
		c := r.completion(cqe{userData: user, res: res, flags: flags})
		if len(c.Data) > 256 || (c.Data != nil && len(c.Data) != int(res)) {
			t.Fatalf("%+v", c)
		}
		r.Release(&c)
	})
}
