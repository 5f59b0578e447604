package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pace-proxy/pace/config"
	"github.com/pace-proxy/pace/upstream"
)

// onLoop runs f on lp and waits for it.
func onLoop(lp *loop, f func()) {
	done := make(chan struct{})
	lp.exec(func() {
		f()
		close(done)
	})
	<-done
}

// loopOfClient returns the loop serving the client connection whose
// address (as pace sees it) is remote, or nil.
func loopOfClient(p *testProxy, remote string) *loop {
	list := p.e.loopList.Load()
	if list == nil {
		return nil
	}
	for _, lp := range *list {
		found := false
		onLoop(lp, func() {
			for s := lp.sessions.next; s != &lp.sessions; s = s.next {
				if s.cl.c != nil && s.cl.c.RemoteAddr().String() == remote {
					found = true
				}
			}
		})
		if found {
			return lp
		}
	}
	return nil
}

// dialLoop opens a client connection and returns it with the loop that
// serves it.
func dialLoop(t *testing.T, p *testProxy) (net.Conn, *loop) {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 200; i++ {
		if lp := loopOfClient(p, c.LocalAddr().String()); lp != nil {
			return c, lp
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	t.Fatal("pace has no session for the new connection")
	return nil, nil
}

// rawGet sends one GET on c and returns the response status.
func rawGet(c net.Conn, path string, close bool) (int, error) {
	conn := ""
	if close {
		conn = "Connection: close\r\n"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, conn)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Out of descriptors, with the spare ones held by idle pooled connections
// of another loop: the waiter must get one of them, not a 503 after
// connect_timeout.
func TestQueueTakesIdleFromOtherLoops(t *testing.T) {
	testFDBudget = 5
	defer func() { testFDBudget = 0 }()
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			time.Sleep(d)
		}
		io.WriteString(w, "ok\n")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 2
		o.Upstreams.ConnectTimeout = config.Duration(time.Second)
	})
	// Two overlapping requests on loop A leave two idle connections there.
	var onA []net.Conn
	var lpA *loop
	for len(onA) < 2 {
		c, lp := dialLoop(t, p)
		if lpA == nil {
			lpA = lp
		}
		if lp == lpA {
			onA = append(onA, c)
		} else {
			c.Close()
		}
	}
	done := make(chan int, 2)
	for _, c := range onA {
		go func(c net.Conn) { st, _ := rawGet(c, "/?d=200ms", true); done <- st }(c)
	}
	for i := 0; i < 2; i++ {
		if st := <-done; st != 200 {
			t.Fatalf("warm-up request: status %d", st)
		}
	}
	for deadline := time.Now().Add(3 * time.Second); p.e.clients.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients left after the warm-up", p.e.clients.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Three clients on loop B fill the budget: 3 clients + 2 idle = 5.
	var onB []net.Conn
	for len(onB) < 3 {
		c, lp := dialLoop(t, p)
		if lp != lpA {
			onB = append(onB, c)
			defer c.Close()
		} else {
			c.Close()
		}
	}
	for deadline := time.Now().Add(3 * time.Second); p.e.clients.Load() != 3; {
		if time.Now().After(deadline) {
			t.Fatalf("pace has %d clients, want 3", p.e.clients.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.e.uplinks.Load(); n != 2 {
		t.Fatalf("%d backend connections before the request, want the 2 idle ones", n)
	}
	start := time.Now()
	st, err := rawGet(onB[0], "/", true)
	if st != 200 {
		t.Fatalf("request on loop B, idle connections only on loop A: status %d (%v) after %v, want 200",
			st, err, time.Since(start).Round(time.Millisecond))
	}
}

// A backend connection killed while the work of its unpark is still queued
// on the loop is counted off the descriptor budget once, not twice.
func TestKillWhileResumingCountsOnce(t *testing.T) {
	big := make([]byte, 8<<20)
	b := newNamedBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 64 << 10
	})
	c, lp := dialLoop(t, p)
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // the response is never read
	if !waitUpParked(lp, 2*time.Second) {
		t.Fatal("the backend connection was never parked")
	}
	// What poll does once the client drained, then, in the same loop turn
	// and before the queued resumed runs, the session ends (client reset,
	// response timeout).
	onLoop(lp, func() {
		s := lp.sessions.next
		up := s.up
		up.unpark(up.lp, up.resumed)
		s.abort()
	})
	c.Close()
	for deadline := time.Now().Add(3 * time.Second); p.e.clients.Load() != 0 || p.e.uplinks.Load() > 0; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second decrement would land by now
	if n := p.e.uplinks.Load(); n != 0 {
		t.Fatalf("backend connections counted = %d after all closed, want 0", n)
	}
}

// A session that stops waiting and waits again goes to the back of the
// queue: its old entry does not keep its place.
func TestFifoRequeueGoesToBack(t *testing.T) {
	var f fifo
	a, b := &session{st: stQueued}, &session{st: stQueued}
	f.push(a)
	a.st = stExchange // a's wait ended (served, or 503 on timeout)
	f.push(b)
	a.st, a.gen = stQueued, a.gen+1 // a waits again, as enqueue does
	f.push(a)
	var got []*session
	for s := f.pop(stQueued); s != nil; s = f.pop(stQueued) {
		got = append(got, s)
	}
	if len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("pop order = %v, want [b a] (b %p, a %p)", got, b, a)
	}
}

// A retry after a stale pooled connection may go to the same backend when
// it is the only one; if that retry has to wait for a descriptor, it keeps
// that right when its wait ends, instead of failing with 502.
func TestQueuedStaleRetrySameBackend(t *testing.T) {
	var staleDone atomic.Bool
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(400 * time.Millisecond)
			w.Header().Set("Connection", "close") // frees its descriptor when done
		case "/stale":
			if staleDone.CompareAndSwap(false, true) {
				c, _, _ := w.(http.Hijacker).Hijack()
				c.Close() // a pooled connection that dies under the request
				return
			}
		default:
			time.Sleep(200 * time.Millisecond)
		}
		io.WriteString(w, "ok\n")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = config.Duration(2 * time.Second)
	})
	a, lp := dialLoop(t, p)
	defer a.Close()
	bc, _ := dialLoop(t, p)
	defer bc.Close()
	// Two overlapping requests leave two pooled connections.
	done := make(chan int, 2)
	for _, c := range []net.Conn{a, bc} {
		go func(c net.Conn) { st, _ := rawGet(c, "/", false); done <- st }(c)
	}
	for i := 0; i < 2; i++ {
		if st := <-done; st != 200 {
			t.Fatalf("warm-up request: status %d", st)
		}
	}
	// From here on, 2 clients + 1 busy connection use up the budget: the
	// retry after the stale connection has to wait for /slow to finish.
	onLoop(lp, func() { p.e.fdBudget = 3 })
	go func() { st, _ := rawGet(bc, "/slow", false); done <- st }()
	time.Sleep(50 * time.Millisecond)
	st, err := rawGet(a, "/stale", false)
	if st != 200 {
		t.Fatalf("GET /stale (stale pooled connection, retry queued for a descriptor): status %d (%v), want 200", st, err)
	}
	if st := <-done; st != 200 {
		t.Fatalf("GET /slow: status %d", st)
	}
	if n := p.e.met.UpstreamQueued.Get(); n == 0 {
		t.Fatal("the retry did not wait for a descriptor: the test did not test the queue")
	}
}

// A connection to a backend is not handed to a session that is retrying
// because that backend failed it (with a backend just killed, its last
// finished connection would fail the retry too); later waiters get it,
// and the skipped one still gets a connection to another backend. A
// session dialing a backend for its first attempt does get one.
func TestFifoSkipsWaitersThatTriedTheBackend(t *testing.T) {
	b0, b1 := &upstream.Backend{Index: 0}, &upstream.Backend{Index: 1}
	var f fifo
	retrying := &session{st: stConnecting, tried: 1<<0 | 1<<1, be: b1} // b0 failed it; dialing b1
	first := &session{st: stConnecting, tried: 1 << 0, be: b0}         // dialing b0, nothing failed
	f.push(retrying)
	f.push(first)
	if got := f.popFor(stConnecting, 0); got != first {
		t.Fatalf("popFor(backend 0) = %p, want the session on its first attempt (%p)", got, first)
	}
	if got := f.popFor(stConnecting, 0); got != nil {
		t.Fatalf("popFor(backend 0) = %p, want nil: only a session that backend 0 failed waits", got)
	}
	if got := f.popFor(stConnecting, 1); got != retrying {
		t.Fatalf("popFor(backend 1) = %p, want the retrying session (%p)", got, retrying)
	}
	if got := f.pop(stConnecting); got != nil {
		t.Fatalf("pop = %p on an empty queue", got)
	}
	// Queued sessions have no attempt in flight: every tried backend failed.
	queued := &session{st: stQueued, tried: 1 << 0, be: b0}
	f.push(queued)
	if got := f.popFor(stQueued, 0); got != nil {
		t.Fatalf("popFor(stQueued, backend 0) = %p, want nil: backend 0 failed it", got)
	}
	if got := f.popFor(stQueued, 1); got != queued {
		t.Fatalf("popFor(stQueued, backend 1) = %p, want the queued session", got)
	}
}

// A closed session is reused for a later client only where no stale
// reference can reach the new one: its waiter entries and dials in flight
// compare an attempt number that reuse moves on, and a session still on
// the watch list or with an enroll in flight (whose OnOpen would hand the
// old client's socket to the new client) is not reused at all.
func TestSessionReuseLeavesStaleReferencesStale(t *testing.T) {
	lp := &loop{}
	old := lp.takeSession()
	old.st, old.status, old.closeAfter = stQueued, 200, true
	var f fifo
	f.push(old)
	dialFor := &upconn{s: old, gen: old.gen} // a dial made for old's attempt
	old.dead, old.st = true, stClosed
	lp.putSession(old)
	s := lp.takeSession()
	if s != old {
		t.Fatal("a closed session was not reused: the test tests nothing")
	}
	if s.dead || s.status != 0 || s.closeAfter || s.values == nil {
		t.Fatalf("reused session: dead %v, status %d, closeAfter %v, values set %v; want it live and reset, with its field lookup",
			s.dead, s.status, s.closeAfter, s.values != nil)
	}
	s.st = stQueued // the new client waits too
	if got := f.pop(stQueued); got != nil {
		t.Fatal("the old client's queue entry served the new client")
	}
	if dialFor.gen == s.gen {
		t.Fatal("a dial made for the old client would count as the new client's")
	}

	for _, c := range []struct {
		name string
		set  func(*session)
	}{
		{"watched", func(s *session) { s.watched = true }},
		{"resumed queued", func(s *session) { s.cl.resuming = true }},
		{"parked once", func(s *session) { s.cl.pend = make([]byte, 0, 16) }},
		{"with a long target", func(s *session) { s.target = make([]byte, 0, maxSpareBytes+1) }},
		{"with a large replay buffer", func(s *session) { s.replay = make([]byte, 0, maxSpareBytes+1) }},
	} {
		lp := &loop{}
		s := &session{lp: lp, dead: true, st: stClosed}
		c.set(s)
		lp.putSession(s)
		if got := lp.takeSession(); got == s {
			t.Errorf("a session closed while %s was reused", c.name)
		}
	}
}

// A /metrics answer whose write fails closes its session inside Write,
// and serveMetrics goes on to record the request from the session's
// fields. Reset for reuse at that point, the session had method GET and
// start 0: a HEAD became a GET lasting the process's uptime. Sessions are
// reset when taken for the next client instead.
func TestClosedSessionKeepsItsFieldsUntilReused(t *testing.T) {
	p := startProxy(t, []string{"127.0.0.1:1"}, nil)
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		for wait := time.Now().Add(5 * time.Second); p.e.clients.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(wait) {
				t.Fatal("the connection was never accepted")
			}
		}
		block := make(chan struct{})
		p.e.each(func(lp *loop) { <-block })
		c.Write([]byte("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // a reset, read with the request: the answer's write fails
		time.Sleep(10 * time.Millisecond)
		close(block)
		for wait := time.Now().Add(5 * time.Second); p.e.clients.Load() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(wait) {
				t.Fatal("the reset connection was never closed")
			}
		}
	}
	// Each scrape is a GET /metrics too, counted after it answers: the
	// n-th sees n-1 of them.
	var get, head, scrapes float64
	for wait := time.Now().Add(5 * time.Second); head < 20 && time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
		m := scrape(t, p)
		scrapes++
		get, head = m[`http_requests_duration_seconds_count{method="GET",status="200"}`], m[`http_requests_duration_seconds_count{method="HEAD",status="200"}`]
	}
	if get != scrapes-1 || head != 20 {
		t.Errorf("HEAD /metrics with failed writes counted %v times as HEAD and %v as GET, want 20 and %v (the scrapes)", head, get, scrapes-1)
	}
}

// A spare session keeps no request path scratch: "GET http://h?q" makes
// the Request build its origin form "/?q" in a buffer of its own, up to
// max_uri_size, and up to 256 spares per loop would each hold one until
// reused (putSession bounds the other buffers a spare keeps).
func TestSpareSessionHoldsNoPathScratch(t *testing.T) {
	be := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{be.addr()}, func(o *Options) { o.Server.Workers = 1 })
	// All open at once, so that each has its own session.
	const clients = 4
	var conns []net.Conn
	for i := 0; i < clients; i++ {
		conns = append(conns, dialProxy(t, p))
	}
	for _, c := range conns {
		io.WriteString(c, "GET http://h?"+strings.Repeat("a", 4000)+" HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response: %v, %v; want 200", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		spares, held := 0, 0
		p.e.eachWait(func(lp *loop) {
			spares = len(lp.spareSessions)
			for _, s := range lp.spareSessions {
				held += cap(s.req.Path)
			}
		}, 5*time.Second)
		if spares >= clients {
			if held != 0 {
				t.Fatalf("%d spare sessions hold %d bytes of request path", spares, held)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spare sessions after %d closed clients, want %d", spares, clients, clients)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
