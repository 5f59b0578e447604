// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build linux && !poll_opt

package netpoll

import (
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// A Trigger after Close fails and writes nothing: the eventfd's number
// may belong to a new descriptor by then (here, a pipe's write end).
func TestPaceTriggerAfterClose(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	efd := p.efd
	_ = p.Close()
	var r, w *os.File
	var pipes []*os.File
	defer func() {
		for _, f := range pipes {
			_ = f.Close()
		}
	}()
	for i := 0; i < 64 && w == nil; i++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, pr, pw)
		if int(pw.Fd()) == efd {
			r, w = pr, pw
		}
	}
	if w == nil {
		t.Skipf("eventfd number %d was not reused by a pipe's write end", efd)
	}
	if err := p.Trigger(0, func(any) error { return nil }, nil); err == nil {
		t.Error("Trigger after Close succeeded")
	}
	rfd := int(r.Fd()) // Fd makes it blocking: once, before SetNonblock
	if err := unix.SetNonblock(rfd, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := unix.Read(rfd, buf); n > 0 {
		t.Fatalf("Trigger after Close wrote %d bytes to descriptor %d, now a pipe", n, efd)
	}
}

// countYields runs p's loop, with cb for its descriptors' events, while
// work runs, and returns how many times the loop yielded and for how long
// it ran (at most that long: from before it started to after it returned).
func countYields(t *testing.T, p *Poller, cb PollEventHandler, work func()) (int64, time.Duration) {
	t.Helper()
	var yields atomic.Int64
	yield = func() { yields.Add(1); runtime.Gosched() }
	defer func() { yield = runtime.Gosched }()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Polling(cb) }()
	work()
	if err := p.Trigger(queue.HighPriority, func(any) error { return errorx.ErrEngineShutdown }, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errorx.ErrEngineShutdown) {
		t.Fatalf("Polling returned %v, want ErrEngineShutdown", err)
	}
	return yields.Load(), time.Since(start)
}

// socketPair returns a connected pair of non-blocking Unix sockets, closed
// at the end of the test.
func socketPair(t *testing.T) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fds[0]); _ = unix.Close(fds[1]) })
	return [2]int{fds[0], fds[1]}
}

// spin waits d without sleeping: time.Sleep would take a millisecond or
// more, and the loop would yield on time alone.
func spin(d time.Duration) {
	for t0 := time.Now(); time.Since(t0) < d; {
	}
}

func noEvents(int, uint32, uint16) error { return nil }

// A loop that keeps going idle yields at most once per yieldEvery: each
// runtime.Gosched wakes the spare P's thread (see yieldEvery). Stock gnet
// yielded on every empty poll, here once per readable event.
func TestPaceYieldAtMostOncePerInterval(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds := socketPair(t)
	if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{}, 1)
	buf := make([]byte, 16)
	cb := func(fd int, _ uint32, _ uint16) error {
		_, _ = unix.Read(fd, buf)
		read <- struct{}{}
		return nil
	}
	const events = 1000
	n, elapsed := countYields(t, p, cb, func() {
		for i := 0; i < events; i++ {
			if _, err := unix.Write(fds[1], []byte("x")); err != nil {
				t.Fatal(err)
			}
			<-read
			spin(20 * time.Microsecond) // let the loop find nothing more
		}
	})
	if limit := int64(elapsed/yieldEvery) + 1; n < 1 || n > limit {
		t.Errorf("%d idle polls in up to %v yielded %d times, want 1 to %d (at most one per %v)", events, elapsed, n, limit, yieldEvery)
	}
}

// A loop that always has events still yields every yieldEvery, so that the
// runtime's monitor does not have to preempt it. Stock gnet yielded only
// after a poll that found nothing, here never.
func TestPaceYieldWhileBusy(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds := socketPair(t)
	if _, err := unix.Write(fds[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Level-triggered and never read: every poll reports it.
	if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
		t.Fatal(err)
	}
	n, elapsed := countYields(t, p, noEvents, func() { time.Sleep(100 * time.Millisecond) })
	if limit := int64(elapsed/yieldEvery) + 1; n < 2 || n > limit {
		t.Errorf("a loop busy for up to %v yielded %d times, want 2 to %d (one per %v)", elapsed, n, limit, yieldEvery)
	}
}

// After a HandOff a loop yields before it blocks, however recent its last
// yield, and twice (see Polling), so that a goroutine it made runnable runs
// even with no idle P. Here each event's callback hands off and the loop
// then goes idle, so it yields about twice per event.
func TestPaceYieldAfterHandOff(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds := socketPair(t)
	if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{}, 1)
	buf := make([]byte, 16)
	cb := func(fd int, _ uint32, _ uint16) error {
		_, _ = unix.Read(fd, buf)
		HandOff()
		read <- struct{}{}
		return nil
	}
	const events = 1000
	n, elapsed := countYields(t, p, cb, func() {
		for i := 0; i < events; i++ {
			if _, err := unix.Write(fds[1], []byte("x")); err != nil {
				t.Fatal(err)
			}
			<-read
			spin(100 * time.Microsecond) // let the loop block
		}
	})
	// More than one yield per event on top of yieldEvery's: a single
	// yield would leave the goroutine waiting one time in 61.
	if limit := int64(elapsed/yieldEvery) + 1; n <= events+limit || n > 2*events+limit {
		t.Errorf("%d events handed off, each followed by an idle poll, in up to %v: %d yields, want more than %d (one per event and yieldEvery's) and at most %d", events, elapsed, n, events+limit, 2*events+limit)
	}
}
