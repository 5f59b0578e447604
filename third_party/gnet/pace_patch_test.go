// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build linux

package gnet

// Tests of pace's patches to gnet (PACE.md). They use only the standard
// library, so that `go test` here needs nothing beyond gnet's own
// dependencies.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// paceHandler runs one loop and answers a few commands from clients:
// "fd" sends the connection's descriptor to fds; "dup" duplicates it
// (into dups) and closes the connection; "close" closes it.
type paceHandler struct {
	BuiltinEventEngine
	eng    Engine
	booted chan struct{}
	exited chan struct{} // closed when Run returns
	loops  chan *eventloop
	fds    chan int
	dups   chan int

	mu     sync.Mutex
	errors []string // what gnet logged at ERROR level
}

func (h *paceHandler) Debugf(string, ...any) {}
func (h *paceHandler) Infof(string, ...any)  {}
func (h *paceHandler) Warnf(string, ...any)  {}
func (h *paceHandler) Fatalf(string, ...any) {}
func (h *paceHandler) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.errors = append(h.errors, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

func (h *paceHandler) logged(sub string) bool { return h.count(sub) > 0 }

// count is how many of the logged errors contain sub.
func (h *paceHandler) count(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.errors {
		if strings.Contains(e, sub) {
			n++
		}
	}
	return n
}

func (h *paceHandler) OnBoot(eng Engine) Action {
	h.eng = eng
	close(h.booted)
	return None
}

func (h *paceHandler) OnOpen(c Conn) ([]byte, Action) {
	select {
	case h.loops <- c.EventLoop().(*eventloop):
	default:
	}
	return nil, None
}

func (h *paceHandler) OnTraffic(c Conn) Action {
	b, _ := c.Next(-1)
	switch string(b) {
	case "fd":
		h.fds <- c.Fd()
	case "dup":
		fd, err := c.Dup()
		if err != nil {
			panic(err)
		}
		h.dups <- fd
		return Close
	case "close":
		return Close
	}
	return None
}

// startPace runs an engine with one loop listening on a free port of
// 127.0.0.1 (SO_REUSEPORT, so that the loop accepts by itself, as pace
// runs it) and returns the loop and its listening descriptor and address.
func startPace(t *testing.T) (*paceHandler, *eventloop, int, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	h := &paceHandler{booted: make(chan struct{}), exited: make(chan struct{}), loops: make(chan *eventloop, 1), fds: make(chan int, 1), dups: make(chan int, 1)}
	var runErr error
	go func() {
		runErr = Run(h, "tcp://"+addr, WithMulticore(true), WithNumEventLoop(1), WithReusePort(true), WithLogger(h))
		close(h.exited)
	}()
	select {
	case <-h.booted:
	case <-h.exited:
		t.Fatalf("Run: %v", runErr)
	case <-time.After(5 * time.Second):
		t.Fatal("engine did not boot")
	}
	t.Cleanup(func() {
		_ = h.eng.Stop(context.Background())
		<-h.exited
	})
	// The loop, from the first connection it opens: OnBoot runs before
	// the engine has registered its loops.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var el *eventloop
	select {
	case el = <-h.loops:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection opened")
	}
	_ = c.Close()
	for fd := range el.listeners {
		return h, el, fd, addr
	}
	t.Fatal("the loop has no listener")
	return nil, nil, 0, ""
}

// One readiness event of a listener accepts every queued connection, up
// to maxAcceptBatch, not one: stock gnet accepted 1 here.
func TestPaceAcceptBatch(t *testing.T) {
	_, el, lfd, addr := startPace(t)
	release, blocked := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	if err := el.poller.Trigger(queue.LowPriority, func(any) error {
		close(blocked)
		<-release
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	<-blocked
	const n = 50
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr) // queued: the loop is blocked
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Runs right after the blocking task, before the loop polls again,
	// so the listener's queue holds all n.
	got := make(chan int32, 1)
	if err := el.poller.Trigger(queue.LowPriority, func(any) error {
		before := el.countConn()
		err := el.accept(lfd, 0, 0)
		got <- el.countConn() - before
		return err
	}, nil); err != nil {
		t.Fatal(err)
	}
	unblock()
	select {
	case g := <-got:
		if g != n {
			t.Fatalf("one accept call took %d of %d queued connections, want all", g, n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the accept task did not run")
	}
}

// epollHas reports whether some epoll instance of this process watches
// descriptor fd, from the tfd lines of /proc/self/fdinfo.
func epollHas(t *testing.T, fd int) bool {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if dst, _ := os.Readlink(l); dst != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + filepath.Base(l))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(info), "\n") {
			// tfd:        7 events:       19 data: ...
			if f := strings.Fields(line); len(f) > 1 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) {
				return true
			}
		}
	}
	return false
}

// Closing a connection leaves no epoll registration behind, whether gnet
// skipped EPOLL_CTL_DEL (a socket accepted and never duplicated: closing
// its only descriptor removes it) or did it (the socket was duplicated
// with Dup and lives on, as pace's parked connections do). A registration
// left behind would report the old socket's events under a descriptor
// number that a new connection may reuse.
func TestPaceCloseLeavesNoEpollEntry(t *testing.T) {
	h, _, _, addr := startPace(t)
	for _, cmd := range []string{"close", "dup"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "fd")
		var fd int
		select {
		case fd = <-h.fds:
		case <-time.After(5 * time.Second):
			t.Fatal("no answer to fd")
		}
		if !epollHas(t, fd) {
			t.Fatalf("%s: open connection fd %d is in no epoll set", cmd, fd)
		}
		fmt.Fprint(c, cmd)
		dup := -1
		if cmd == "dup" {
			select {
			case dup = <-h.dups:
			case <-time.After(5 * time.Second):
				t.Fatal("no answer to dup")
			}
		}
		left := true
		for deadline := time.Now().Add(2 * time.Second); left && time.Now().Before(deadline); {
			if left = epollHas(t, fd); left {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if dup >= 0 {
			_ = os.NewFile(uintptr(dup), "dup").Close()
		}
		if left {
			t.Fatalf("%s: fd %d is still in an epoll set after the connection closed", cmd, fd)
		}
	}
}

// askFD sends "fd" on c and waits for the loop to answer through h.fds.
func askFD(t *testing.T, h *paceHandler, c net.Conn, what string) {
	t.Helper()
	if _, err := fmt.Fprint(c, "fd"); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	select {
	case <-h.fds:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not served", what)
	}
}

// Running out of descriptors while accepting pauses that loop's accepting
// for acceptPause instead of stopping the engine, which closed every
// connection. A connection that queued meanwhile is accepted afterwards,
// and one that was open all along is still served.
func TestPaceAcceptPausesOnEMFILE(t *testing.T) {
	h, el, _, addr := startPace(t)
	live, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	askFD(t, h, live, "open connection")

	release, blocked := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	if err := el.poller.Trigger(queue.LowPriority, func(any) error {
		close(blocked)
		<-release
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	<-blocked
	queued, err := net.Dial("tcp", addr) // waits in the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()

	// Leave this process no descriptor to accept with.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	low := saved
	low.Cur = uint64(len(ents) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fill []*os.File
	restore := func() {
		for _, f := range fill {
			_ = f.Close()
		}
		fill = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	}
	defer restore()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}

	unblock()
	deadline := time.Now().Add(2 * time.Second)
	for !h.logged("not accepting") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !h.logged("not accepting") {
		restore()
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("accepting with no descriptor left logged no pause; errors: %q", h.errors)
	}
	select {
	case <-h.exited:
		restore()
		t.Fatal("the engine stopped on EMFILE")
	case <-time.After(3 * acceptPause):
	}
	// One try per pause, not a loop failing on every pass.
	n := h.count("not accepting")
	restore()
	if n > 10 {
		t.Errorf("%d accept failures logged in %v of EMFILE, want one per %v", n, 3*acceptPause, acceptPause)
	}
	askFD(t, h, queued, "connection queued while out of descriptors")
	askFD(t, h, live, "connection open before")
}

// A connection the poller refuses is reported to Enroll's caller as an
// error: register records it before the callback that Enroll waits for.
// Stock gnet reported success, with a connection that never opens.
func TestPaceRegisterFailureReported(t *testing.T) {
	_, el, _, _ := startPace(t)
	f, err := os.Open(os.DevNull) // epoll refuses a descriptor it cannot poll
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	ccb := &connWithCallback{c: newStreamConn("tcp", fd, el, nil, nil, nil), cb: func() { close(opened) }}
	if err := el.poller.Trigger(queue.LowPriority, el.register, ccb); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(5 * time.Second):
		t.Fatal("register did not call back")
	}
	if ccb.err == nil {
		t.Fatal("registering an unpollable descriptor reported no error")
	}
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) == nil {
		t.Errorf("descriptor %d still open after its registration failed", fd)
	}
}

// An Enroll that meets an engine already stopping returns an error and
// closes its duplicate of the descriptor, so that closing the original
// closes the socket (the peer reads EOF). Stock gnet waited forever; an
// earlier patch returned but left the duplicate open.
func TestPaceEnrollOnStoppingEngine(t *testing.T) {
	h, el, _, _ := startPace(t)
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	nc, err := net.Dial("tcp", bl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	peer, err := bl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	release, blocked := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	if err := el.poller.Trigger(queue.LowPriority, func(any) error {
		close(blocked)
		<-release
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	<-blocked
	go func() { _ = h.eng.Stop(context.Background()) }()
	for deadline := time.Now().Add(5 * time.Second); el.engine.concurrency.ctx.Err() == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the engine's context was not cancelled")
		}
		time.Sleep(time.Millisecond)
	}
	ch, err := el.Enroll(context.Background(), nc)
	if err == nil {
		select {
		case r := <-ch:
			err = r.Err
		case <-time.After(5 * time.Second):
			t.Fatal("Enroll did not answer on a stopping engine")
		}
	}
	if err == nil {
		t.Fatal("Enroll on a stopping engine succeeded")
	}
	_ = nc.Close()
	unblock()
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, rerr := peer.Read(make([]byte, 8)); rerr == nil || n > 0 || os.IsTimeout(rerr) {
		t.Fatalf("peer read %d, %v after the failed Enroll; want EOF (the duplicate closed)", n, rerr)
	}
}

// CloseListeners closes the listening socket: a new connection is refused
// at once (not accepted, nor left in a backlog nobody reads), and one
// already open is served as before. A pause of accepting that ends after
// the close leaves the listener closed.
func TestPaceCloseListeners(t *testing.T) {
	h, el, fd, addr := startPace(t)
	live, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	askFD(t, h, live, "open connection")
	// A pause in progress (as after EMFILE) whose resume comes after the close.
	el.resumeAcceptAfter(fd, 50*time.Millisecond)
	closeListeners(t, h.eng)
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			// CloseListeners only queues the close on the loop: a dial
			// that reached the accept queue just before is reset when
			// the listener closes, which is as final as a refusal.
			if errors.Is(err, syscall.ECONNRESET) && time.Now().Before(deadline) {
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial after CloseListeners: %v, want connection refused", err)
			}
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 2s after CloseListeners")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the pause's resume has run
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("accepting again after the pause ended: the resume reopened a closed listener")
	}
	if h.logged("resume accepting") {
		t.Errorf("the resume tried the closed listener: %q", h.errors)
	}
	askFD(t, h, live, "connection open before CloseListeners")
}

// killHandler closes target when a client sends "kill", as pace closes
// another connection at once from a callback.
type killHandler struct {
	*paceHandler
	target Conn
}

func (h *killHandler) OnTraffic(c Conn) Action {
	b, _ := c.Next(-1)
	if string(b) == "kill" && h.target != nil {
		_ = c.EventLoop().Close(h.target) // as pace's closeConn: another conn, closed at once
		h.target = nil
	}
	return None
}

// After CloseListeners, the loop's listeners map still names the closed
// descriptor number. A connection that later gets that number and is
// closed while its own event waits in the same epoll batch is a stale
// event, not an accept: accept's EBADF used to stop the whole engine.
func TestPaceClosedListenerNumberReused(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	_ = l.Close()
	ph := &paceHandler{booted: make(chan struct{}), exited: make(chan struct{}), loops: make(chan *eventloop, 4), fds: make(chan int, 1), dups: make(chan int, 1)}
	h := &killHandler{paceHandler: ph}
	var runErr error
	go func() {
		runErr = Run(h, "tcp://"+addr, WithMulticore(true), WithNumEventLoop(1), WithReusePort(true), WithLogger(ph))
		close(ph.exited)
	}()
	<-ph.booted
	defer func() { _ = ph.eng.Stop(context.Background()); <-ph.exited }()
	x, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	el := <-ph.loops
	var lfd int
	for fd := range el.listeners {
		lfd = fd
	}
	closeListeners(t, ph.eng)
	time.Sleep(50 * time.Millisecond)
	if _, err := unix.FcntlInt(uintptr(lfd), unix.F_GETFD, 0); err == nil {
		t.Fatalf("listener fd %d still open", lfd)
	}
	// A new connection that takes the listener's old number (as pace's
	// next Enroll of a backend connection may: the lowest free number).
	side, _ := net.Listen("tcp", "127.0.0.1:0")
	defer side.Close()
	a, _ := net.Dial("tcp", side.Addr().String())
	defer a.Close()
	b, _ := side.Accept()
	defer b.Close()
	rc, _ := a.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) {
		if err := unix.Dup3(int(fd), lfd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	})
	opened := make(chan struct{})
	ccb := &connWithCallback{c: newStreamConn("tcp", lfd, el, nil, nil, nil), cb: func() { close(opened) }}
	if err := el.poller.Trigger(queue.HighPriority, el.register, ccb); err != nil {
		t.Fatal(err)
	}
	<-opened
	if ccb.err != nil {
		t.Fatal(ccb.err)
	}
	h.target = ccb.c
	// Block the loop, make x then the target readable, release it: one
	// epoll_wait returns both, x first.
	release, blocked := make(chan struct{}), make(chan struct{})
	el.poller.Trigger(queue.HighPriority, func(any) error { close(blocked); <-release; return nil }, nil)
	<-blocked
	x.Write([]byte("kill"))
	time.Sleep(20 * time.Millisecond)
	b.Write([]byte("data"))
	time.Sleep(20 * time.Millisecond)
	close(release)
	select {
	case <-ph.exited:
		t.Fatalf("engine stopped: Run returned %v; gnet errors: %q", runErr, ph.errors)
	case <-time.After(500 * time.Millisecond):
	}
}

// WithTCPDeferAccept sets TCP_DEFER_ACCEPT on the listeners: a connection
// whose client has sent nothing yet is not accepted (no OnOpen), and one
// whose first bytes arrived is, at once.
func TestPaceTCPDeferAccept(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	h := &paceHandler{booted: make(chan struct{}), exited: make(chan struct{}), loops: make(chan *eventloop, 1), fds: make(chan int, 1), dups: make(chan int, 1)}
	var runErr error
	go func() {
		runErr = Run(h, "tcp://"+addr, WithMulticore(true), WithNumEventLoop(1), WithReusePort(true), WithLogger(h), WithTCPDeferAccept(5))
		close(h.exited)
	}()
	select {
	case <-h.booted:
	case <-h.exited:
		t.Fatalf("Run: %v", runErr)
	case <-time.After(5 * time.Second):
		t.Fatal("engine did not boot")
	}
	t.Cleanup(func() {
		_ = h.eng.Stop(context.Background())
		<-h.exited
	})
	c, err := net.Dial("tcp", addr) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-h.loops:
		t.Fatal("a connection that sent nothing was accepted at once")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var el *eventloop
	select {
	case el = <-h.loops:
	case <-time.After(2 * time.Second):
		t.Fatal("the connection was not accepted once its first byte arrived")
	}
	for fd := range el.listeners {
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); err != nil || v == 0 {
			t.Fatalf("TCP_DEFER_ACCEPT on the listener = %d, %v; want it set", v, err)
		}
	}
}

// closeListeners calls eng.CloseListeners until the engine has finished
// starting, as pace's drain does on each tick: Run marks the engine
// started just after its loops start, and a loop can serve a connection
// before that.
func closeListeners(t *testing.T, eng Engine) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		err := eng.CloseListeners()
		if err == nil {
			return
		}
		if !errors.Is(err, errEngineStarting) || time.Now().After(deadline) {
			t.Fatalf("CloseListeners: %v", err)
		}
	}
}
