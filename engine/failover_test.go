package engine

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pace-proxy/pace/metrics"
)

// A client that stops sending its request body gets 408, and the backend,
// which was waiting for that body, is not counted as failing: before,
// fail_threshold such clients took a healthy backend out for the cooldown.
func TestStalledRequestBodyIsTheClientsFault(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Upstreams.ResponseTimeout = dur(300 * time.Millisecond)
		o.Upstreams.FailThreshold = 2
	})
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc") // then silence
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if resp.StatusCode != 408 {
			t.Fatalf("client %d stalled its body: status %d, want 408", i, resp.StatusCode)
		}
	}
	if !p.e.bal.Backends[0].Up(nanotime()) || p.e.met.BackendUp[0].Load() != 1 {
		t.Fatal("the backend was marked down because clients stalled their request bodies")
	}
}

// A request that never left pace (its dial was refused) fails over to the
// other backend even while the client connection is parked for
// backpressure (a body over buffer_limit).
func TestFailoverWhileClientParked(t *testing.T) {
	b := newNamedBackend(t, "alive", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		buf := make([]byte, 1<<16)
		for {
			k, err := r.Body.Read(buf)
			n += k
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "got %d", n)
	})
	dead := freeAddr(t)
	p := startProxy(t, []string{dead, b.addr()}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
	})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	body := strings.Repeat("x", 32<<10)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response (retries %d): %v", p.e.met.Retries.Get(), err)
	}
	got := make([]byte, 64)
	n, _ := resp.Body.Read(got)
	if resp.StatusCode != 200 || string(got[:n]) != fmt.Sprintf("got %d", len(body)) {
		t.Fatalf("status %d, body %q; want 200 and the whole body forwarded", resp.StatusCode, got[:n])
	}
}

// A response pace decides on while the client is parked (here a 504: the
// backend takes the head, then neither reads the body nor answers) still
// reaches the client, as nginx's would, instead of a bare close.
func TestParkedClientGetsErrorResponse(t *testing.T) {
	addr, _ := holdingBackend(t)
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(500 * time.Millisecond)
	})
	c := dialProxy(t, p)
	size := 16 << 20 // more than the socket buffers on both sides hold
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		chunk := make([]byte, 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response (parked %d times): %v", p.e.met.Parked.Get(), err)
	}
	if resp.StatusCode != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if p.e.met.Parked.Get() == 0 {
		t.Fatal("the client was never parked: the test did not test anything")
	}
}

// A backend that drops SYNs (a host that is down) holds each dial for
// connect_timeout. Dials to the other backend must not wait behind those,
// and dials that queued for it before it was marked down are not made at
// all: their requests go to the other backend at once.
func TestBlackholedBackendDelaysNoOtherDials(t *testing.T) {
	testDialers = 1 // one worker per backend: a stuck dial blocks its queue
	defer func() { testDialers = 0 }()
	hole := blackhole(t)
	good := newNamedBackend(t, "good", nil)
	p := startProxy(t, []string{hole, good.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(2 * time.Second)
		o.Upstreams.FailThreshold = 1
	})
	done := make(chan namedStatus, 3)
	send := func(name string) { done <- sendNamed(p, name) }
	// Round robin: a -> the blackhole (its dial holds the worker),
	// b -> good, c -> the blackhole again (its dial queues behind a's).
	for _, name := range []string{"a", "b", "c"} {
		go send(name)
		time.Sleep(100 * time.Millisecond) // keep the round-robin order
	}
	for range 3 {
		r := <-done
		if r.err != nil || r.status != 200 {
			t.Fatalf("client %s: status %d, err %v; want 200 (failover to the good backend)", r.name, r.status, r.err)
		}
		// a's dial to the blackhole takes connect_timeout (2s) and then
		// marks it down; b's answer must not have waited for that.
		if r.name == "b" && !p.e.bal.Backends[0].Up(nanotime()) {
			t.Fatal("b's dial to the good backend waited behind the dial to the blackhole")
		}
	}
	c := client()
	_, body := get(t, c, p.url("/metrics"))
	want := fmt.Sprintf("pace_upstream_errors_total{backend=%q,kind=\"connect\"} 1\n", hole)
	if !strings.Contains(body, want) {
		t.Fatalf("want exactly one dial to the blackhole (c's skipped once it was down); metrics lack %q", want)
	}
}

// A request whose dial waits for a worker (behind dials that each take
// connect_timeout, to a backend that drops SYNs but is never marked down)
// gets 504 within twice connect_timeout instead of waiting its turn; until
// then a dialing request had no deadline at all.
func TestDialWaitIsBounded(t *testing.T) {
	testDialers = 1
	defer func() { testDialers = 0 }()
	hole := blackhole(t)
	zero := 0
	p := startProxy(t, []string{hole}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(500 * time.Millisecond)
		o.Upstreams.FailThreshold = 100
		o.Upstreams.MaxRetries = &zero
	})
	const n = 4 // dials end at 0.5, 1, 1.5 and 2 s
	done := make(chan int, n)
	for i := 0; i < n; i++ {
		go func() {
			if st, err := rawStatus(p.addr); err != nil || st != 504 {
				done <- -1
				return
			}
			// How many dials had failed when this answer came.
			done <- int(p.e.met.UpstreamErrors(0, metrics.ErrConnect))
		}()
	}
	for i := 0; i < n; i++ {
		if f := <-done; f < 0 {
			t.Fatal("a request got no 504")
		} else if f >= n {
			t.Fatalf("a request was answered only after all %d dials failed: its wait for a dial worker had no bound", n)
		}
	}
}

// With a single backend, a request whose dial queued while the backend was
// up, and which was marked down (threshold reached by some other request's
// timeout, say) before the dial ran, is refused with 502 without any
// attempt, while a request that picked the same backend a moment later,
// when it was already down, is sent to it (Pick's all-down fallback) and
// succeeds. Pick promises that a request is never refused only because
// every backend recently failed.
func TestSkippedDialSoleBackendRefusedWithoutTry(t *testing.T) {
	testDialers = 1
	defer func() { testDialers = 0 }()
	addr, release := heldListener(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // A's success lands after B's dial is looked at
		io.WriteString(w, "ok")
	})
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(5 * time.Second)
		o.Upstreams.FailThreshold = 1
	})
	done := make(chan namedStatus, 3)
	send := func(name string) { done <- sendNamed(p, name) }
	go send("A") // its dial holds the only worker (SYN dropped)
	time.Sleep(100 * time.Millisecond)
	go send("B") // picks the backend while up; its dial queues behind A's
	time.Sleep(100 * time.Millisecond)
	// The backend goes down (what expired() does on a response timeout).
	p.e.bal.Failure(p.e.bal.Backends[0], nanotime())
	go send("C") // picks it while down: the all-down fallback
	time.Sleep(100 * time.Millisecond)
	release() // the backend accepts again: A's SYN retransmit connects
	got := map[string]int{}
	for range 3 {
		r := <-done
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
		got[r.name] = r.status
	}
	if got["A"] != 200 || got["C"] != 200 || got["B"] != 200 {
		t.Fatalf("statuses %v; want all 200: B was refused without its dial ever being made, while C, which picked the same (down) backend later, was served", got)
	}
}

// With the default max_retries (1) and a single backend that drops SYNs,
// the dial times out and the retry finds no backend left to try: the
// answer is still the dial timeout's 504, not "no backend" (502).
func TestSoleBackendDialTimeoutIs504(t *testing.T) {
	hole := blackhole(t)
	p := startProxy(t, []string{hole}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(300 * time.Millisecond)
		o.Upstreams.FailThreshold = 100
	})
	st, err := rawStatus(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	if st != http.StatusGatewayTimeout {
		t.Fatalf("dial to the only backend timed out: status %d, want 504", st)
	}
}

// With every backend down, a request gets one attempt (on the backend
// whose turn it is, so that a recovered one is found), not a retry on
// another down one too: that doubled the dials to failing backends and,
// for hosts that drop SYNs, the client's wait. While one is up, a failed
// attempt is still retried there.
func TestAllDownOneAttemptPerRequest(t *testing.T) {
	a, b := freeAddr(t), freeAddr(t) // both refuse
	p := startProxy(t, []string{a, b}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 1
		o.Upstreams.Cooldown = dur(time.Minute)
	})
	refused := func() uint64 {
		return p.e.met.UpstreamErrors(0, metrics.ErrConnect) + p.e.met.UpstreamErrors(1, metrics.ErrConnect)
	}
	// The first request tries both, and both go down.
	if st, err := rawStatus(p.addr); err != nil || st != 502 {
		t.Fatalf("first request: %d %v, want 502", st, err)
	}
	if n := refused(); n != 2 {
		t.Fatalf("first request: %d refused dials, want 2", n)
	}
	for i := 0; i < 4; i++ {
		if st, err := rawStatus(p.addr); err != nil || st != 502 {
			t.Fatalf("request %d with all down: %d %v, want 502", i, st, err)
		}
	}
	if n := refused(); n != 2+4 {
		t.Fatalf("4 requests with all backends down made %d dials, want 4 (one each)", n-2)
	}
	if n := p.e.met.Retries.Get(); n != 1 {
		t.Fatalf("retries: %d, want 1 (the first request's)", n)
	}
}

// The same for the dlConnect deadline: the request's dial waits behind
// others for the single worker, the deadline fires, and the retry finds
// nothing to try: 504.
func TestSoleBackendConnectDeadlineIs504(t *testing.T) {
	testDialers = 1
	defer func() { testDialers = 0 }()
	hole := blackhole(t)
	p := startProxy(t, []string{hole}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(400 * time.Millisecond)
		o.Upstreams.FailThreshold = 100
	})
	// Three dials queue for one worker: the third waits 0.8 s before its
	// own dial even starts, so its deadline (0.8 s) fires first.
	res := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() { st, _ := rawStatus(p.addr); res <- st }()
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if st := <-res; st != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", st)
		}
	}
}

// post sends a one-byte POST and returns its status.
func post(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// closingBackend reads each request head and closes without answering,
// counting connections.
func closingBackend(t *testing.T, conns *atomic.Int64, reply string) string {
	return rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		if _, err := readHead(bufio.NewReader(c)); err == nil && reply != "" {
			c.Write([]byte(reply))
		}
	})
}

// A backend that closes a fresh connection before answering is failing,
// as nginx's "upstream prematurely closed connection" counts toward
// max_fails: after fail_threshold of them it is skipped. Before, it never
// was, and POSTs to it got 502 one request in two for ever.
func TestClosedBeforeAnswerCountsAsFailure(t *testing.T) {
	var conns atomic.Int64
	bad := closingBackend(t, &conns, "")
	good := newNamedBackend(t, "good", nil)
	p := startProxy(t, []string{bad, good.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 3
		o.Upstreams.Cooldown = dur(time.Minute)
	})
	c := client()
	for i := 0; i < 10; i++ {
		if resp, _ := get(t, c, p.url("/")); resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d, want 200 (retried on the good backend)", i, resp.StatusCode)
		}
	}
	if p.e.bal.Backends[0].Up(nanotime()) {
		t.Fatalf("the backend closed %d connections before answering and is still up", conns.Load())
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("the closing backend got %d connections, want 3 (then skipped)", n)
	}
	for i := 0; i < 4; i++ {
		if st := post(t, c, p.url("/")); st != 200 {
			t.Fatalf("POST %d with the closing backend skipped: status %d", i, st)
		}
	}
}

// A retry leaves the round-robin position alone. With two backends, one
// failing every request, the retries used to move the position so that
// the failing one was tried first by every request.
func TestRetryKeepsRoundRobinTurns(t *testing.T) {
	var conns atomic.Int64
	bad := closingBackend(t, &conns, "")
	good := newNamedBackend(t, "good", nil)
	p := startProxy(t, []string{bad, good.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 100 // never skipped
	})
	c := client()
	for i := 0; i < 10; i++ {
		if resp, _ := get(t, c, p.url("/")); resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d, want 200", i, resp.StatusCode)
		}
	}
	if n := conns.Load(); n != 5 {
		t.Fatalf("the failing backend was tried first by %d of 10 requests, want 5 (its turns)", n)
	}
}

// A response head cut short by the backend closing is nothing the client
// has seen: an idempotent request is retried on the other backend, as
// nginx does for a premature close; a POST is not (it was sent).
func TestHeadCutShortRetried(t *testing.T) {
	var conns atomic.Int64
	bad := closingBackend(t, &conns, "HTTP/1.1 200 OK\r\nContent-Le")
	good := newNamedBackend(t, "good", nil)
	p := startProxy(t, []string{bad, good.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 100
	})
	c := client()
	for i := 0; i < 4; i++ {
		resp, body := get(t, c, p.url("/"))
		if resp.StatusCode != 200 || !strings.Contains(body, "good") {
			t.Fatalf("GET %d: status %d %q, want 200 from the good backend", i, resp.StatusCode, body)
		}
	}
	posts := map[int]int{}
	for i := 0; i < 4; i++ {
		posts[post(t, c, p.url("/"))]++
	}
	if posts[502] != 2 || posts[200] != 2 {
		t.Fatalf("POSTs: %v, want 2 x 200 (good backend) and 2 x 502 (the cut head, not retried)", posts)
	}
}

// A backend that takes a request and never answers holds it for
// response_timeout. Nothing has reached the client then, so an idempotent
// request goes to the other backend, as nginx's default proxy_next_upstream
// ("error timeout") does; a POST gets the 504, since the backend may still
// act on it. The silent connection is closed, not pooled.
func TestResponseTimeoutRetriedWhenIdempotent(t *testing.T) {
	var conns, open atomic.Int64
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	silent := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		open.Add(1)
		defer open.Add(-1)
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		go func() { <-hold; c.Close() }()
		io.Copy(io.Discard, br) // until pace closes it
	})
	good := newNamedBackend(t, "good", nil)
	var logs lockedBuffer
	p := startProxy(t, []string{silent, good.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 100 // never skipped
		o.Upstreams.ResponseTimeout = dur(200 * time.Millisecond)
		o.Server.AccessLog = true
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	c := client()
	for i := 0; i < 4; i++ {
		resp, body := get(t, c, p.url("/"))
		if resp.StatusCode != 200 || !strings.Contains(body, "good") {
			t.Fatalf("GET %d: status %d %q, want 200 from the good backend", i, resp.StatusCode, body)
		}
	}
	if n := p.e.met.UpstreamErrors(0, metrics.ErrTimeout); n != 2 {
		t.Fatalf("timeouts on the silent backend: %d, want 2 (its turns)", n)
	}
	if n := p.e.met.Retries.Get(); n != 2 {
		t.Fatalf("retries: %d, want 2", n)
	}
	posts := map[int]int{}
	for i := 0; i < 4; i++ {
		posts[post(t, c, p.url("/"))]++
	}
	if posts[504] != 2 || posts[200] != 2 {
		t.Fatalf("POSTs: %v, want 2 x 200 (good backend) and 2 x 504 (timed out, not retried)", posts)
	}
	// Every silent connection was closed when it timed out: none was
	// pooled for a later request.
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n, k := open.Load(), conns.Load(); n != 0 || k != 4 {
		t.Fatalf("silent backend: %d of %d connections still open, want 0 of 4", n, k)
	}
	// The access log names both backends of a retried request, in the
	// order tried, like nginx's $upstream_addr.
	p.stop(t)
	lines := map[string]int{}
	for _, l := range strings.Split(logs.String(), "\n") {
		for _, want := range []string{
			" GET / 200 " + silent + "," + good.addr() + " ",
			" GET / 200 " + good.addr() + " ",
			" POST / 504 " + silent + " ",
			" POST / 200 " + good.addr() + " ",
		} {
			if strings.Contains(l, want) {
				lines[want]++
			}
		}
	}
	if len(lines) != 4 {
		t.Fatalf("access log lines %v, want 2 of each of 4 kinds:\n%s", lines, logs.String())
	}
	for want, n := range lines {
		if n != 2 {
			t.Fatalf("access log has %d lines with %q, want 2:\n%s", n, want, logs.String())
		}
	}
}

// oneShotBackend answers "ok" to the first request on each connection,
// keeping it open, and closes it unanswered at the next: every reuse of
// a pooled connection to it loses the keep-alive race.
func oneShotBackend(t *testing.T) string {
	return rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		readHead(br)
	})
}

// After a pooled connection turns out stale, the fresh connection goes to
// the same backend, which was up a moment ago. It used to go to the next
// one, and when that one was down the request got its refusal: 502 for a
// request a healthy backend would have answered.
func TestStaleRetryStaysOnItsBackend(t *testing.T) {
	stale := oneShotBackend(t)
	dead := freeAddr(t)
	for _, retries := range []int{1, 0} {
		t.Run(fmt.Sprintf("max_retries=%d", retries), func(t *testing.T) {
			p := startProxy(t, []string{stale, dead}, func(o *Options) {
				o.Server.Workers = 1
				o.Upstreams.MaxRetries = &retries
				o.Upstreams.FailThreshold = 1
				o.Upstreams.Cooldown = dur(time.Minute)
			})
			c := client()
			get(t, c, p.url("/")) // warm-up: marks the dead backend down, or pools a connection
			get(t, c, p.url("/"))
			for i := 0; i < 6; i++ {
				resp, body := get(t, c, p.url("/"))
				if resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q, want 200 (fresh connection to the live backend)", i, resp.StatusCode, body)
				}
			}
		})
	}
}

// The fresh connection a stale one earns must be a new one. A connection
// finishing an exchange used to be handed to a session still dialing, this
// one included, and could be stale too: with max_retries = 0 the request
// then failed, and with a backend just killed the second stale one sent
// the retry to that backend again (a rare 502 in TestBackendKilledUnderLoad).
// A backend that answers once per connection makes every reused one stale;
// many clients at once make connections finish while others dial.
func TestStaleRetryGetsANewConnection(t *testing.T) {
	oneshot := oneShotBackend(t)
	zero := 0
	p := startProxy(t, []string{oneshot}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.MaxRetries = &zero
		o.Upstreams.FailThreshold = 1000
	})
	if n, first := getConcurrently(p.url("/"), 16, 100); n > 0 {
		t.Fatalf("%d of 1600 requests failed (first: %v); want every stale connection retried on a new one", n, first)
	}
}

// A pooled connection that never carried an exchange (its dial finished
// after its client left) can lose the keep-alive race like any pooled
// one. That is not the backend's failure: the request gets a fresh
// connection to the same backend. It used to count as a failure, and with
// one backend the client got 502 and the backend was marked down.
func TestNeverUsedPooledConnectionIsStale(t *testing.T) {
	var first atomic.Bool
	addr, release := heldListener(t, func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close() // the pooled connection closes as the request arrives
			return
		}
		io.WriteString(w, "ok")
	})
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = dur(10 * time.Second)
		o.Upstreams.FailThreshold = 1
		o.Upstreams.Cooldown = dur(time.Minute)
	})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET /gone HTTP/1.1\r\nHost: x\r\n\r\n"))
	time.Sleep(100 * time.Millisecond) // the dial hangs: SYNs are dropped
	c.Close()
	time.Sleep(100 * time.Millisecond) // the session is gone
	release()                          // the dial completes, into the pool
	deadline := time.Now().Add(10 * time.Second)
	for p.e.met.IdleConns[0].Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the dial of the client that left never reached the pool")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, body := get(t, client(), p.url("/"))
	if resp.StatusCode != 200 || body != "ok" || !p.e.bal.Backends[0].Up(nanotime()) {
		t.Fatalf("request on a never-used pooled connection that closed: %d %q, backend up %v; want 200 and up",
			resp.StatusCode, body, p.e.bal.Backends[0].Up(nanotime()))
	}
}

// retry_timeout bounds the time in which a request may still go to
// another backend, like nginx's proxy_next_upstream_timeout: with two
// silent backends before a good one and max_retries 2, the request that
// starts on the first silent backend is retried once (its first timeout
// comes within retry_timeout) and then gets the second timeout's 504
// instead of a third attempt. Without the bound it reaches the good one.
func TestRetryTimeoutBoundsFailover(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	silentServe := func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		go func() { <-hold; c.Close() }()
		io.Copy(io.Discard, br) // until pace closes it
	}
	a, b := rawBackend(t, silentServe), rawBackend(t, silentServe)
	good := newNamedBackend(t, "good", nil)
	for _, tc := range []struct {
		retryTO time.Duration
		want    map[int]int
	}{
		{0, map[int]int{200: 3}},
		// The first timeout fires 400-500 ms in (the sweep runs every
		// 100 ms), within 700 ms; the second at 800 ms or later.
		{700 * time.Millisecond, map[int]int{200: 2, 504: 1}},
	} {
		var logs lockedBuffer
		p := startProxy(t, []string{a, b, good.addr()}, func(o *Options) {
			o.Server.Workers = 1
			o.Server.AccessLog = true
			o.Log = slog.New(slog.NewTextHandler(&logs, nil))
			retries := 2
			o.Upstreams.MaxRetries = &retries
			o.Upstreams.FailThreshold = 100 // never skipped
			o.Upstreams.ResponseTimeout = dur(400 * time.Millisecond)
			o.Upstreams.RetryTimeout = dur(tc.retryTO)
		})
		c := client()
		got := map[int]int{}
		for i := 0; i < 3; i++ {
			resp, _ := get(t, c, p.url("/"))
			got[resp.StatusCode]++
		}
		p.stop(t)
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("retry_timeout %v: statuses %v, want %v\n%s", tc.retryTO, got, tc.want, logs.String())
		}
		if tc.retryTO != 0 && !strings.Contains(logs.String(), " GET / 504 "+a+","+b+" ") {
			t.Fatalf("retry_timeout %v: no access log line for the 504 after %s and %s:\n%s", tc.retryTO, a, b, logs.String())
		}
	}
}

// A client that sends Expect: 100-continue waits for the backend's 100
// before it sends its body (RFC 9110 section 10.1.1). A backend that
// sends nothing is the one at fault when response_timeout passes: an
// idempotent PUT goes to the other backend, which asks for the body and
// gets it; a POST gets 504. Both used to get 408 "the request body did
// not arrive in time", blamed on the client, with no retry and nothing
// counted against the backend.
func TestExpectContinueSilentBackendIsNotTheClientsFault(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	silent := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		<-hold
	})
	good := headsBackend(t, func(c net.Conn, br *bufio.Reader, h string) bool {
		if !strings.Contains(h, "\r\nExpect: 100-continue\r\n") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil {
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ngot:"+string(body))
		return true
	})
	p := startProxy(t, []string{silent, good}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 100 // never skipped
		o.Upstreams.ResponseTimeout = dur(300 * time.Millisecond)
	})
	// send does what curl does: the head, then the body only after a 100.
	send := func(method string) int {
		conn := dialProxy(t, p)
		defer conn.Close()
		br := bufio.NewReader(conn)
		io.WriteString(conn, method+" / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if resp.StatusCode == 100 {
			io.WriteString(conn, "hello")
			if resp, err = http.ReadResponse(br, nil); err != nil {
				t.Fatalf("%s after 100: %v", method, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == 200 && string(b) != "got:hello" {
				t.Fatalf("%s: body %q, want got:hello", method, b)
			}
		}
		return resp.StatusCode
	}
	puts, posts := map[int]int{}, map[int]int{}
	for i := 0; i < 2; i++ {
		puts[send("PUT")]++
	}
	for i := 0; i < 2; i++ {
		posts[send("POST")]++
	}
	if puts[200] != 2 || posts[200] != 1 || posts[504] != 1 {
		t.Fatalf("PUTs %v, POSTs %v; want 2 x 200, and 200 + 504", puts, posts)
	}
	if n := p.e.met.UpstreamErrors(0, metrics.ErrTimeout); n != 2 {
		t.Fatalf("timeouts counted against the silent backend: %d, want 2", n)
	}
}

// pace_retries_total counts retries, one per failed attempt retried: a
// dial skipped because its backend went down while it waited was no
// attempt, and the request picking again is no retry. It used to count
// one (a review saw 150 retries for 128 failed dials). One dial worker
// and a backend whose dials hang: the first times out and marks it down,
// and the dials queued behind it are skipped.
func TestSkippedDialIsNoRetry(t *testing.T) {
	testDialers = 1
	defer func() { testDialers = 0 }()
	dead := blackhole(t)
	// Slow enough that none of its connections is free to be handed to a
	// request still dialing the other one.
	good := newNamedBackend(t, "good", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		io.WriteString(w, "ok")
	})
	p := startProxy(t, []string{dead, good.addr()}, func(o *Options) {
		o.Upstreams.FailThreshold = 1
		o.Upstreams.Cooldown = dur(time.Minute)
		o.Upstreams.ConnectTimeout = dur(300 * time.Millisecond)
	})
	if n, first := getConcurrently(p.url("/"), 20, 1); n > 0 {
		t.Fatalf("%d of 20 requests failed (first: %v), want every one served by the good backend", n, first)
	}
	m := scrape(t, p)
	failed := m[`pace_upstream_errors_total{backend="`+dead+`",kind="connect"}`] + m[`pace_upstream_errors_total{backend="`+dead+`",kind="timeout"}`]
	if retries := m["pace_retries_total"]; retries != failed || failed == 0 {
		t.Errorf("pace_retries_total = %v, want %v: one per failed dial, none for the dials skipped once the backend was down", retries, failed)
	}
}

// A reused connection closed before any answer is the keep-alive race,
// forgiven, only for a request that then gets its fresh connection. A POST
// cannot (it may have been processed): its 502 counts against the
// backend as a closed connection, so a backend that drops every POST goes
// down. It used to be booked as stale and the backend stayed up.
func TestStaleCloseOfPostCountsAgainstTheBackend(t *testing.T) {
	be := headsBackend(t, func(c net.Conn, br *bufio.Reader, head string) bool {
		if strings.HasPrefix(head, "POST") {
			return false // read, then closed unanswered
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.FailThreshold = 100 // stays up: only the counts matter here
	})
	c := client()
	for i := 0; i < 3; i++ {
		if resp, _ := get(t, c, p.url("/")); resp.StatusCode != 200 {
			t.Fatalf("GET %d: %d", i, resp.StatusCode)
		}
		resp, err := c.Post(p.url("/"), "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("POST %d on a pooled connection the backend drops: %d, want 502", i, resp.StatusCode)
		}
	}
	m := scrape(t, p)
	key := `pace_upstream_errors_total{backend="` + be + `",kind="`
	if closed, stale := m[key+`closed"}`], m[key+`stale"}`]; closed != 3 || stale != 0 {
		t.Errorf("errors closed = %v, stale = %v; want 3 and 0", closed, stale)
	}
}

// getConcurrently sends n GETs for url from each of g clients at once, and
// returns how many failed (an error, or not 200 "ok") and the first
// failure.
func getConcurrently(url string, g, n int) (int64, any) {
	var bad atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client()
			for range n {
				resp, err := c.Get(url)
				if err != nil {
					bad.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok" {
					bad.Add(1)
					first.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, body))
				}
			}
		}()
	}
	wg.Wait()
	return bad.Load(), first.Load()
}
