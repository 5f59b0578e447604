package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// A PUT sent on a pooled connection that the backend has just closed is
// retried on a fresh one (PUT is idempotent). The body write fails inside
// gnet's Write, which starts the retry there; the retry must forward the
// whole body, and no part of the body may be parsed as a request.
func TestRetryAfterFailedBodyWrite(t *testing.T) {
	closeFirst := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	conns := 0
	addr := rawBackend(t, func(c net.Conn) {
		mu.Lock()
		conns++
		k := conns
		mu.Unlock()
		br := bufio.NewReader(c)
		for {
			h, err := readHead(br)
			if err != nil {
				return
			}
			line := strings.SplitN(h, "\r\n", 2)[0]
			got := 0
			if i := strings.Index(strings.ToLower(h), "content-length: "); i >= 0 {
				v := h[i+len("content-length: "):]
				cl, _ := strconv.Atoi(v[:strings.Index(v, "\r")])
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				got, _ = io.ReadFull(br, make([]byte, cl))
				c.SetReadDeadline(time.Time{})
			}
			mu.Lock()
			seen = append(seen, fmt.Sprintf("conn%d %s body=%d", k, line, got))
			mu.Unlock()
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			if k == 1 {
				<-closeFirst // then close: the pooled connection goes stale
				return
			}
		}
	})
	p := startProxy(t, []string{addr}, func(o *Options) { o.Server.Workers = 1 })
	c, lp := dialLoop(t, p)
	defer c.Close()
	if st, err := rawGet(c, "/first", false); st != 200 {
		t.Fatalf("GET /first: status %d (%v)", st, err)
	}
	time.Sleep(50 * time.Millisecond) // the connection is pooled
	// Hold the loop so that it sees the client's request before the
	// backend's FIN.
	unblock := make(chan struct{})
	lp.exec(func() { <-unblock })
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	fmt.Fprintf(c, "PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)
	time.Sleep(50 * time.Millisecond)
	close(closeFirst)
	time.Sleep(50 * time.Millisecond)
	close(unblock)

	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("PUT /put: %v", err)
	}
	io.ReadAll(resp.Body)
	c.SetReadDeadline(time.Now().Add(time.Second))
	resp2, err2 := http.ReadResponse(br, nil)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if err2 == nil {
		t.Errorf("a second response (%d) came for a request the client never sent; backend saw %q", resp2.StatusCode, seen)
	}
	put := 0
	for _, s := range seen {
		if strings.Contains(s, "/smuggled") {
			t.Errorf("the PUT body reached the backend as a request: %q", s)
		}
		if strings.Contains(s, "PUT") {
			put++
			if !strings.HasSuffix(s, fmt.Sprintf("body=%d", len(smuggled))) {
				t.Errorf("the PUT reached the backend without its whole body: %q", s)
			}
		}
	}
	if put == 0 {
		t.Errorf("the PUT never reached a backend: %q", seen)
	}
}

// Shutdown while a keep-alive client is still downloading the end of a
// finished response (the session waits for its next request, the tail is
// queued in gnet's outbound buffer): the response must arrive whole.
func TestDrainFlushesQueuedResponse(t *testing.T) {
	const size = 24 << 20
	body := strings.Repeat("x", size)
	b := newNamedBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.WriteString(w, body)
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 2 * size // pace takes the whole response at once
	})
	// A small receive buffer, so that the kernel cannot hold what pace
	// has queued (send buffers grow to 4 MiB by default).
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
	}}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var lp *loop
	for i := 0; i < 200 && lp == nil; i++ {
		lp = loopOfClient(p, c.LocalAddr().String())
		time.Sleep(5 * time.Millisecond)
	}
	if lp == nil {
		t.Fatal("pace has no session for the client")
	}
	c.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"))
	// The client reads nothing until the exchange is over on pace's side
	// with bytes still queued for it.
	queued := 0
	for deadline := time.Now().Add(10 * time.Second); queued == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the exchange never finished with bytes queued for the client")
		}
		onLoop(lp, func() {
			if s := lp.sessions.next; s != &lp.sessions && s.st == stHead && s.cl.c != nil {
				queued = s.cl.c.OutboundBuffered()
			}
		})
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- p.e.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the drain has run
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response head: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if n != size || err != nil {
		t.Fatalf("drain with %d bytes queued: got %d of %d bytes (%v)", queued, n, size, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A dial goroutine may log after Shutdown closed the access log: the line
// is dropped, where a send on the closed channel used to panic pace.
func TestLogAfterAccessLogClosed(t *testing.T) {
	a := newAccessLog(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	a.close()
	a.send(logEntry{level: slog.LevelWarn, msg: "backend connect failed"})
}

// blockHandler is a slog handler that blocks every record until gate is
// closed: a log writer that is slow (a full pipe, a stuck terminal).
type blockHandler struct{ gate chan struct{} }

func (h blockHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h blockHandler) Handle(context.Context, slog.Record) error { <-h.gate; return nil }
func (h blockHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h blockHandler) WithGroup(string) slog.Handler             { return h }

// The writer ends after close even when its queue was full then (it was
// behind): close cannot queue anything, and the channel stays open.
func TestAccessLogWriterExitsAfterCloseWithFullQueue(t *testing.T) {
	gate := make(chan struct{})
	a := newAccessLog(slog.New(blockHandler{gate}), true)
	a.send(logEntry{level: slog.LevelInfo, msg: "x"}) // run blocks in the handler
	for len(a.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < cap(a.ch); i++ { // the queue is full
		a.send(logEntry{level: slog.LevelInfo, msg: "x"})
	}
	a.close() // unfixed: the stop entry cannot be queued (1 s), wg wait times out (1 s)
	close(gate)
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatalf("the access log writer never exits after close (queue %d)", len(a.ch))
	}
}

// deferred_accept leaves a connection that has sent nothing with the
// kernel: pace does not count it as a client, and takes it with its first
// bytes, which are then served at once.
func TestDeferredAccept(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.DeferredAccept = true
	})
	c := dialProxy(t, p)
	time.Sleep(300 * time.Millisecond)
	if n := p.e.clients.Load(); n != 0 {
		t.Fatalf("%d clients after a connection that sent nothing, want 0 (TCP_DEFER_ACCEPT holds it in the kernel)", n)
	}
	start := time.Now()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || p.e.clients.Load() != 1 {
		t.Fatalf("status %d with %d clients, want 200 from the one client", resp.StatusCode, p.e.clients.Load())
	}
	t.Logf("answered %v after the request was sent", time.Since(start))
}

// With no connection there is nothing to time: the loops are not woken
// at all (an idle pace used 1-2% of a core on 10 sweeps a second per
// loop). The first client wakes the ticker again.
func TestIdleProxyIsNotWoken(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	ticks := func() (n int64) {
		p.e.mu.Lock()
		loops := p.e.loops
		p.e.mu.Unlock()
		for _, lp := range loops {
			n += lp.ticks.Load()
		}
		return n
	}
	time.Sleep(350 * time.Millisecond) // three sweeps' worth
	if n := ticks(); n > 1 {
		t.Fatalf("%d ticks with no connection, want at most 1", n)
	}
	c := dialProxy(t, p)
	time.Sleep(350 * time.Millisecond)
	if n := ticks(); n < 2 {
		t.Fatalf("%d ticks with a client connected, want sweeps (its header deadline)", n)
	}
	c.Close()
	for deadline := time.Now().Add(2 * time.Second); p.e.clients.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond)
	n := ticks()
	time.Sleep(350 * time.Millisecond)
	if d := ticks() - n; d > 1 {
		t.Fatalf("%d ticks after the last client left, want at most 1", d)
	}
}

// listenSockets counts the sockets listening on addr's port, from
// /proc/net/tcp.
func listenSockets(t testing.TB, addr string) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ...; st 0A is LISTEN.
		if len(f) > 3 && f[3] == "0A" && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", p)) {
			n++
		}
	}
	return n
}

// Each worker binds one SO_REUSEPORT listening socket, and a burst that
// queued on them while both loops were blocked is served in full once the
// loops run again: the patched gnet takes up to 256 connections per
// readiness event (third_party/gnet, TestPaceAcceptBatch there).
func TestAcceptBurst(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	want := p.e.Workers()
	got := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = listenSockets(t, p.addr); got == want {
			break
		}
	}
	if got != want {
		t.Fatalf("%d sockets listen on %s, want %d (1 per worker)", got, p.addr, want)
	}

	// Each loop is known to pace once it has served a connection. The
	// kernel spreads connections over the sockets by a hash of their
	// ports, so a few may all land on one (1 in 128 for 8 on 2): warm up
	// until every loop has served one.
	var loops []*loop
	for i := 0; i < 200 && len(loops) < want; i++ {
		if st, err := rawStatus(p.addr); err != nil || st != 200 {
			t.Fatalf("warm-up request %d: %d, %v", i, st, err)
		}
		p.e.mu.Lock()
		loops = append(loops[:0], p.e.loops...)
		p.e.mu.Unlock()
	}
	if len(loops) != want {
		t.Fatalf("%d loops served 200 warm-up connections, want %d", len(loops), want)
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the proxy's stop, which needs the loops
	var blocked sync.WaitGroup
	for _, lp := range loops {
		blocked.Add(1)
		if err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			blocked.Done()
			<-release
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	blocked.Wait()
	n := 128
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", p.addr) // the kernel completes it; pace accepts later
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", i)
		conns[i] = c
	}
	unblock()
	for i, c := range conns {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d of %d, queued while the loops were blocked: %v", i, n, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d of %d: status %d, want 200", i, n, resp.StatusCode)
		}
	}
}

// A response still streaming when the drain deadline passes is reset,
// not closed: its body is close-delimited, and a clean end would pass the
// cut body off as complete. gnet's Stop used to close it with a FIN.
func TestDrainDeadlineResetsUnfinishedResponse(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"))
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte("line\n")); err != nil {
				return
			}
		}
	})
	p := startProxy(t, []string{addr}, nil)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go p.e.Shutdown(ctx)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatalf("cut at the drain deadline after %d bytes, the body ended cleanly: want a reset", n)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after %d bytes: %v, want a reset", n, err)
	}
	p.waitStopped(t)
}

// While draining, new connections are refused by the kernel, as nginx
// and HAProxy refuse them: pace closes its listening sockets. They used
// to be accepted and closed, which a client that had sent a POST could
// not tell from a lost request. The request in flight still completes.
func TestDrainRefusesNewConnections(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
		io.WriteString(w, "done")
	})
	p := startProxy(t, []string{b.addr()}, nil)
	res := make(chan string, 1)
	go func() {
		resp, err := client().Get(p.url("/slow"))
		if err != nil {
			res <- err.Error()
			return
		}
		bb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- strconv.Itoa(resp.StatusCode) + " " + string(bb)
	}()
	time.Sleep(100 * time.Millisecond)
	go p.e.Shutdown(context.Background())
	deadline := time.Now().Add(time.Second) // the request in flight holds the drain open for 2s
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			// A dial that reached the accept queue just before the
			// listener closed is reset: never accepted, like a refusal.
			if errors.Is(err, syscall.ECONNRESET) && time.Now().Before(deadline) {
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial while draining: %v, want connection refused", err)
			}
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections still accepted 1s into the drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := <-res; r != "200 done" {
		t.Fatalf("request in flight during the drain: %s, want 200 done", r)
	}
	p.waitStopped(t)
}
