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

// countYields runs p's loop while work runs, and returns how many times
// the loop yielded and for how long it ran (at most that long: the time
// from before it started to after it returned).
func countYields(t *testing.T, p *Poller, work func()) (int64, time.Duration) {
	t.Helper()
	var yields atomic.Int64
	yield = func() { yields.Add(1); runtime.Gosched() }
	defer func() { yield = runtime.Gosched }()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- p.Polling(func(int, uint32, uint16) error { return nil })
	}()
	work()
	if err := p.Trigger(queue.HighPriority, func(any) error { return errorx.ErrEngineShutdown }, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errorx.ErrEngineShutdown) {
		t.Fatalf("Polling returned %v, want ErrEngineShutdown", err)
	}
	return yields.Load(), time.Since(start)
}

// A loop that keeps going idle yields at most once per yieldEvery: each
// runtime.Gosched wakes the spare P's thread (see yieldEvery). Stock gnet
// yielded on every empty poll, here once per task.
func TestPaceYieldAtMostOncePerInterval(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const tasks = 1000
	ran := make(chan struct{}, 1)
	n, elapsed := countYields(t, p, func() {
		for i := 0; i < tasks; i++ {
			if err := p.Trigger(queue.HighPriority, func(any) error { ran <- struct{}{}; return nil }, nil); err != nil {
				t.Fatal(err)
			}
			<-ran
			// Let the loop find its queue empty. time.Sleep would take a
			// millisecond or more, and the test would pass without the patch.
			for t0 := time.Now(); time.Since(t0) < 20*time.Microsecond; {
			}
		}
	})
	if limit := int64(elapsed/yieldEvery) + 1; n < 1 || n > limit {
		t.Errorf("%d idle polls in up to %v yielded %d times, want 1 to %d (at most one per %v)", tasks, elapsed, n, limit, yieldEvery)
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
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := unix.Write(fds[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Level-triggered and never read: every poll reports it.
	if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
		t.Fatal(err)
	}
	n, elapsed := countYields(t, p, func() { time.Sleep(100 * time.Millisecond) })
	if limit := int64(elapsed/yieldEvery) + 1; n < 2 || n > limit {
		t.Errorf("a loop busy for up to %v yielded %d times, want 2 to %d (one per %v)", elapsed, n, limit, yieldEvery)
	}
}
