// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build linux

package gnet

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
)

// pauseHandler counts what it reads and hands each opened connection to
// the test; the test drives PauseRead and ResumeRead on the loop.
type pauseHandler struct {
	BuiltinEventEngine
	eng    Engine
	booted chan struct{}
	conns  chan Conn
	closed chan error
	got    atomic.Int64 // bytes read in OnTraffic
}

func (h *pauseHandler) OnBoot(eng Engine) Action { h.eng = eng; close(h.booted); return None }
func (h *pauseHandler) OnOpen(c Conn) ([]byte, Action) {
	h.conns <- c
	return nil, None
}

func (h *pauseHandler) OnTraffic(c Conn) Action {
	b, _ := c.Next(-1)
	h.got.Add(int64(len(b)))
	return None
}

func (h *pauseHandler) OnClose(_ Conn, err error) Action {
	h.closed <- err
	return None
}

// onLoop runs f on c's event loop and waits for it.
func onLoop(t *testing.T, c Conn, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	if err := c.EventLoop().Execute(context.Background(), RunnableFunc(func(context.Context) error {
		done <- f()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not run the task")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startPause(t *testing.T) (*pauseHandler, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	h := &pauseHandler{booted: make(chan struct{}), conns: make(chan Conn, 4), closed: make(chan error, 4)}
	exited := make(chan struct{})
	go func() {
		_ = Run(h, "tcp://"+addr, WithMulticore(true), WithNumEventLoop(1), WithReusePort(true),
			WithReadBufferCap(4096), WithLogger(&paceHandler{}))
		close(exited)
	}()
	select {
	case <-h.booted:
	case <-exited:
		t.Fatal("Run returned at once")
	case <-time.After(5 * time.Second):
		t.Fatal("engine did not boot")
	}
	t.Cleanup(func() {
		_ = h.eng.Stop(context.Background())
		<-exited
	})
	return h, addr
}

// PauseRead stops OnTraffic while the peer keeps sending (the kernel's
// buffers fill and TCP stops it: memory stays bounded), writes go on,
// output that cannot be sent keeps its writable event and drains, and
// ResumeRead delivers everything that waited. Without the patch there is
// no PauseRead at all: pace duplicated and re-enrolled the descriptor.
func TestPacePauseRead(t *testing.T) {
	h, addr := startPause(t)
	cl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := <-h.conns
	onLoop(t, c, c.PauseRead)
	onLoop(t, c, c.PauseRead) // again: nothing changes

	// The client sends 16 MiB; nothing is read, so its writes block.
	const total = 16 << 20
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for sent.Load() < total {
			n, err := cl.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if got := h.got.Load(); got != 0 {
		t.Fatalf("read %d bytes while paused, want 0", got)
	}
	if s := sent.Load(); s >= total {
		t.Fatalf("the client sent all %d bytes while the server was paused: nothing held it back", s)
	}

	// Writes go on while paused, including output that must wait for
	// the writable event (4 MiB the client reads only later).
	big := make([]byte, 4<<20)
	var queued int
	onLoop(t, c, func() error { _, err := c.Write(big); queued = c.OutboundBuffered(); return err })
	if queued == 0 {
		t.Log("the kernel took the whole write: the writable event is not exercised")
	}
	read := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, cl, int64(len(big)))
		read <- n
	}()
	select {
	case n := <-read:
		if n != int64(len(big)) {
			t.Fatalf("client read %d of %d bytes written while paused", n, len(big))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("output written while paused did not drain")
	}
	time.Sleep(50 * time.Millisecond) // the drain's event has run: still paused
	if got := h.got.Load(); got != 0 {
		t.Fatalf("read %d bytes after the output drained, still paused, want 0", got)
	}

	onLoop(t, c, c.ResumeRead)
	waitFor(t, "every byte after ResumeRead", func() bool { return h.got.Load() >= total })
	wg.Wait()
	if got, s := h.got.Load(), sent.Load(); got != s {
		t.Fatalf("read %d bytes, the client sent %d", got, s)
	}
}

// A reset reaches a paused connection (epoll reports EPOLLERR/EPOLLHUP
// whatever the interest set) as a reset: gnet reads what waited in the
// socket and then the error, and closes with it, never with io.EOF, which
// would pass a cut stream off as a clean end. Stock handling of those
// events closed with io.EOF at once, unread.
func TestPacePausedConnReset(t *testing.T) {
	h, addr := startPause(t)
	cl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := <-h.conns
	onLoop(t, c, c.PauseRead)
	if _, err := cl.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := h.got.Load(); got != 0 {
		t.Fatalf("read %d bytes while paused, want 0", got)
	}
	_ = cl.(*net.TCPConn).SetLinger(0)
	_ = cl.Close() // RST
	select {
	case err := <-h.closed:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a paused connection the peer reset closed with %v, want ECONNRESET", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a paused connection the peer reset was not closed")
	}
}

// A peer that shuts down its side of a paused connection after sending
// (EPOLLHUP once this side shut down too) is read to the end: its data,
// then io.EOF.
func TestPacePausedConnHalfClosed(t *testing.T) {
	h, addr := startPause(t)
	cl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := <-h.conns
	onLoop(t, c, c.PauseRead)
	const n = 100 << 10
	if _, err := cl.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	_ = cl.(*net.TCPConn).CloseWrite()
	time.Sleep(50 * time.Millisecond)
	onLoop(t, c, func() error { return syscall.Shutdown(c.Fd(), syscall.SHUT_WR) }) // both sides shut: EPOLLHUP
	select {
	case err := <-h.closed:
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("closed with %v, want io.EOF", err)
		}
		if got := h.got.Load(); got != n {
			t.Fatalf("read %d of the %d bytes sent before the FIN", got, n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a paused connection shut down on both sides was not closed")
	}
}

// A peer's reset that epoll reports as EPOLLERR|EPOLLHUP without
// EPOLLIN, on a connection that is not paused, closes it with the reset's
// error, not io.EOF: a backend that reset mid-response would otherwise
// pass for one that ended a close-delimited response cleanly. epoll
// usually reports EPOLLIN with the error, so the test resets the peer and
// calls processIO with only the error events, on the loop.
func TestPaceErrorEventReportsReset(t *testing.T) {
	h, addr := startPause(t)
	cl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := <-h.conns
	onLoop(t, c, func() error {
		_ = cl.(*net.TCPConn).SetLinger(0)
		_ = cl.Close() // RST
		pc := c.(*conn)
		// Wait for the reset without reading SO_ERROR, which would
		// consume it: the socket is then in TCP_CLOSE.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			info, err := unix.GetsockoptTCPInfo(pc.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				return err
			}
			if info.State == 7 { // TCP_CLOSE
				break
			}
			if time.Now().After(deadline) {
				return errors.New("the reset did not arrive")
			}
		}
		_ = pc.processIO(pc.fd, netpoll.ErrEvents, 0)
		return nil
	})
	select {
	case err := <-h.closed:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a connection whose peer reset (EPOLLERR|EPOLLHUP) closed with %v, want ECONNRESET", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed")
	}
}
