package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pace-proxy/pace/config"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestRoundRobinAndHeaders(t *testing.T) {
	b1 := newNamedBackend(t, "backend1", nil)
	b2 := newNamedBackend(t, "backend2", nil)
	p := startProxy(t, []string{"http://" + b1.addr(), "http://" + b2.addr()}, nil)
	c := client()
	var names []string
	for i := 0; i < 6; i++ {
		req, _ := http.NewRequest("GET", p.url("/"), nil)
		req.Header.Set("X-Foo", "must-not-pass")
		req.Header.Set("Connection", "X-Foo") // names X-Foo as hop-by-hop
		req.Header.Set("X-Proxy", "spoofed")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		first := strings.SplitN(string(body), "\n", 2)[0]
		names = append(names, strings.TrimPrefix(first, "hello from "))
		want := b1.addr()
		if strings.Contains(first, "backend2") {
			want = b2.addr()
		}
		if got := resp.Header.Get("X-Backend"); got != want {
			t.Errorf("X-Backend = %q, want %q", got, want)
		}
		for _, line := range []string{"x-proxy: pace\n", "x-forwarded-for: 127.0.0.1\n", "x-forwarded-proto: http\n", "x-foo: \n"} {
			if !strings.Contains(string(body), line) {
				t.Errorf("backend saw %q, want a line %q", body, line)
			}
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			t.Fatalf("round robin order = %v, want alternation", names)
		}
	}
}

func TestXForwardedForAppends(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	req, _ := http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "x-forwarded-for: 203.0.113.9, 127.0.0.1\n") {
		t.Fatalf("backend saw %q, want the client IP appended", body)
	}
}

func TestRateLimit429(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		on := true
		o.RateLimit.Enabled = &on
		o.RateLimit.MaxRequests = 3
		o.RateLimit.WindowSeconds = 60
	})
	c := client()
	for i := 0; i < 3; i++ {
		resp, _ := get(t, c, p.url("/"))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i+1, resp.StatusCode)
		}
		if resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Policy") == "" {
			t.Fatalf("admitted response lacks RateLimit headers: %v", resp.Header)
		}
	}
	resp, body := get(t, c, p.url("/"))
	if resp.StatusCode != 429 {
		t.Fatalf("4th request: status %d, want 429", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After = %q, want 1..60", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, "rate limit") {
		t.Fatalf("429 body %q", body)
	}
	// /metrics is never limited.
	if resp, _ := get(t, c, p.url("/metrics")); resp.StatusCode != 200 {
		t.Fatalf("/metrics while limited: %d", resp.StatusCode)
	}
	if got := b.reqs.Load(); got != 3 {
		t.Fatalf("backend got %d requests, want 3", got)
	}
}

func TestFailoverOneBackendDown(t *testing.T) {
	b := newNamedBackend(t, "alive", nil)
	dead := freeAddr(t)
	p := startProxy(t, []string{dead, b.addr()}, nil)
	c := client()
	for i := 0; i < 20; i++ {
		resp, body := get(t, c, p.url("/"))
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from alive") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if p.e.met.Retries.Get() == 0 {
		t.Fatal("no retries counted")
	}
	if p.e.bal.Backends[0].Up(nanotime()) {
		t.Fatal("dead backend not marked down")
	}
}

func TestAllBackendsDown502(t *testing.T) {
	p := startProxy(t, []string{freeAddr(t), freeAddr(t)}, nil)
	resp, body := get(t, client(), p.url("/"))
	if resp.StatusCode != 502 {
		t.Fatalf("status %d %q, want 502", resp.StatusCode, body)
	}
}

func TestConnectionReuse(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	c := client()
	for i := 0; i < 1000; i++ {
		resp, _ := get(t, c, p.url("/"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := b.conns.Load(); n > 4 {
		t.Fatalf("1000 sequential requests opened %d backend connections, want <= 4", n)
	}
}

func TestPipelining(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	})
	p := startProxy(t, []string{b.addr()}, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reqs := "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /d HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := conn.Write([]byte(reqs)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for _, want := range []string{"/slow", "/b", "/c", "/d"} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading response for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "path="+want {
			t.Fatalf("pipelined response = %q, want path=%s", body, want)
		}
	}
}

// bodyBackend serves /bytes?n=N[&chunked=1] and /sha256 (hash of the body).
func bodyBackend(t *testing.T) *namedBackend {
	return newNamedBackend(t, "bodies", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bytes":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", strconv.Itoa(n))
			}
			buf := pattern(64 << 10)
			for n > 0 {
				k := min(n, len(buf))
				w.Write(buf[:k])
				n -= k
			}
		case "/sha256":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		default:
			io.WriteString(w, "ok")
		}
	})
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestLargeBodiesBothWays(t *testing.T) {
	b := bodyBackend(t)
	p := startProxy(t, []string{b.addr()}, nil)
	c := client()
	const n = 8 << 20
	for _, chunked := range []string{"", "&chunked=1"} {
		resp, body := get(t, c, p.url("/bytes?n="+strconv.Itoa(n)+chunked))
		if resp.StatusCode != 200 || len(body) != n {
			t.Fatalf("download%s: status %d, %d bytes, want %d", chunked, resp.StatusCode, len(body), n)
		}
		want := pattern(64 << 10)
		for i := 0; i < n; i += len(want) {
			if body[i:i+len(want)] != string(want) {
				t.Fatalf("download%s: corrupt at %d", chunked, i)
			}
		}
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	sum := sha256.Sum256(payload)
	want := fmt.Sprintf("%d %s", n, hex.EncodeToString(sum[:]))
	// Content-Length upload.
	resp, err := c.Post(p.url("/sha256"), "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != want {
		t.Fatalf("CL upload: backend saw %q, want %q", got, want)
	}
	// Chunked upload (unknown length).
	resp, err = c.Post(p.url("/sha256"), "application/octet-stream", io.MultiReader(bytes.NewReader(payload)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != want {
		t.Fatalf("chunked upload: backend saw %q, want %q", got, want)
	}
}

func TestHTTP10Dechunked(t *testing.T) {
	b := bodyBackend(t)
	p := startProxy(t, []string{b.addr()}, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /bytes?n=100000&chunked=1 HTTP/1.0\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(conn) // pace must close after a close-delimited body
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(all), "\r\n\r\n")
	if !ok {
		t.Fatalf("no head in %q", all[:min(len(all), 200)])
	}
	if strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Fatalf("HTTP/1.0 client got a Transfer-Encoding: %q", head)
	}
	if !strings.Contains(head, "Connection: close") {
		t.Fatalf("no Connection: close in %q", head)
	}
	if len(body) != 100000 || body[:26] != "abcdefghijklmnopqrstuvwxyz" {
		t.Fatalf("de-chunked body: %d bytes", len(body))
	}
}

func TestHeadAnd204And304Framing(t *testing.T) {
	b := bodyBackend(t)
	p := startProxy(t, []string{b.addr()}, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(method, path string) *http.Response {
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", method, path)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.ReadAll(resp.Body)
		return resp
	}
	if r := send("HEAD", "/bytes?n=1234"); r.StatusCode != 200 || r.Header.Get("Content-Length") != "1234" {
		t.Fatalf("HEAD: %d, Content-Length %q, want 1234", r.StatusCode, r.Header.Get("Content-Length"))
	}
	if r := send("GET", "/204"); r.StatusCode != 204 {
		t.Fatalf("204: %d", r.StatusCode)
	}
	if r := send("GET", "/304"); r.StatusCode != 304 {
		t.Fatalf("304: %d", r.StatusCode)
	}
	// The connection must still be in sync.
	if r := send("GET", "/bytes?n=5"); r.StatusCode != 200 {
		t.Fatalf("after no-body responses: %d", r.StatusCode)
	}
}

func TestGarbageResponse502(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		c.Write([]byte("HTTP/1.1 2xx Nope\r\nContent-Length: 0\r\n\r\n"))
		time.Sleep(100 * time.Millisecond)
	})
	p := startProxy(t, []string{addr}, nil)
	resp, _ := get(t, client(), p.url("/"))
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

func TestTimeout504(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		time.Sleep(3 * time.Second)
	})
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Upstreams.ResponseTimeout = dur(300 * time.Millisecond)
	})
	start := time.Now()
	resp, _ := get(t, client(), p.url("/"))
	if resp.StatusCode != 504 {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("504 took %v", el)
	}
}

func TestMetricsExposition(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	c := client()
	for i := 0; i < 5; i++ {
		get(t, c, p.url("/"))
	}
	resp, body := get(t, c, p.url("/metrics"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	h, ok := fams["http_requests_duration_seconds"]
	if !ok {
		t.Fatalf("no http_requests_duration_seconds in\n%s", body)
	}
	var found bool
	for _, m := range h.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["method"] == "GET" && labels["status"] == "200" {
			found = true
			if got := m.GetHistogram().GetSampleCount(); got != 5 {
				t.Errorf("GET 200 count = %d, want 5", got)
			}
			if len(m.GetHistogram().GetBucket()) < 10 {
				t.Errorf("only %d buckets", len(m.GetHistogram().GetBucket()))
			}
		}
	}
	if !found {
		t.Fatalf("no GET/200 series")
	}
	for _, name := range []string{"pace_upstream_requests_total", "pace_client_connections", "pace_backend_up", "pace_upstream_idle_connections", "pace_retries_total", "pace_ratelimited_total", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	if !strings.Contains(body, `http_requests_duration_seconds_bucket{method="GET",status="200",le="0.01"}`) {
		t.Errorf("bucket line not in the brief's form")
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "slow done")
	})
	p := startProxy(t, []string{b.addr()}, nil)
	// An idle keep-alive connection, to be closed by the drain.
	idle, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client().Get(p.url("/slow"))
		if err != nil {
			res <- result{err: err}
			return
		}
		bb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode, body: string(bb)}
	}()
	time.Sleep(150 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "slow done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the in-flight request could finish", el)
	}
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle keep-alive connection still open after drain")
	}
	p.waitStopped(t)
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestMalformedRequestsCloseOnlyThatConnection(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	good, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	gbr := bufio.NewReader(good)
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
		{"GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("b", 70000) + "\r\n\r\n", 431},
		{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x-foo, chunked\r\n\r\n", 501},
		{"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n\r\n", 400},
	} {
		bad, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		bad.Write([]byte(tc.raw))
		bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, _ := io.ReadAll(bad)
		bad.Close()
		want := "HTTP/1.1 " + strconv.Itoa(tc.status) + " "
		if !strings.HasPrefix(string(all), want) || !strings.Contains(string(all), "Connection: close") {
			t.Errorf("Parse(%.60q) answered %.80q, want %q and a close", tc.raw, all, want)
		}
		// The other connection keeps working.
		fmt.Fprintf(good, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		good.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(gbr, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("good connection broke after %.40q: %v", tc.raw, err)
		}
		io.ReadAll(resp.Body)
	}
}

func TestStaleKeepAliveRetried(t *testing.T) {
	// The backend answers one request per connection but says keep-alive,
	// then closes when the next request arrives: that request must be
	// retried transparently on a fresh connection. The keep-alive race is not a failed backend,
	// so the fresh connection is made even with failover off (nginx gives
	// a failed cached connection an extra try the same way).
	for _, retries := range []int{1, 0} {
		t.Run(fmt.Sprintf("max_retries=%d", retries), func(t *testing.T) {
			var mu sync.Mutex
			conns := 0
			addr := rawBackend(t, func(c net.Conn) {
				mu.Lock()
				conns++
				mu.Unlock()
				br := bufio.NewReader(c)
				if _, err := readHead(br); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				// The next request on this connection loses the race
				// with the backend's idle close: read it, then close.
				readHead(br)
			})
			p := startProxy(t, []string{addr}, func(o *Options) {
				o.Server.Workers = 1
				o.Upstreams.MaxRetries = &retries
			})
			c := client()
			for i := 0; i < 5; i++ {
				resp, body := get(t, c, p.url("/"))
				if resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if conns < 5 {
				t.Fatalf("backend saw %d connections, want >= 5 (one per answered request)", conns)
			}
			// The race is counted as such, not as the backend failing.
			m := scrape(t, p)
			stale := m[`pace_upstream_errors_total{backend="`+addr+`",kind="stale"}`]
			closed := m[`pace_upstream_errors_total{backend="`+addr+`",kind="closed"}`]
			if stale < 1 || closed != 0 {
				t.Fatalf("kind=stale %v, kind=closed %v; want the races under stale only", stale, closed)
			}
		})
	}
}

// Regression: with the backend reading slowly, pumpBody stopped at the
// buffer limit and, when the client had already sent the rest of its
// body, nothing woke it again: the upload hung. The same for a response
// held back for a slow client after the backend had finished sending.
func TestSmallBufferLimitNoStall(t *testing.T) {
	b := newNamedBackend(t, "sleepy", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			time.Sleep(200 * time.Millisecond)
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(bytes.Repeat([]byte("z"), n))
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
	})
	c := &http.Client{Timeout: 15 * time.Second}
	for _, size := range []int{5000, 100 << 10, 3 << 20, 12<<20 + 7} {
		payload := bytes.Repeat([]byte("u"), size)
		sum := sha256.Sum256(payload)
		resp, err := c.Post(p.url("/up"), "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatalf("upload %d: %v", size, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", size, sum); string(got) != want {
			t.Fatalf("upload %d: backend saw %q", size, got)
		}
		// A slow client: read the response only after a pause.
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /down?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
		time.Sleep(150 * time.Millisecond)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		r2, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("download %d: %v", size, err)
		}
		body, err := io.ReadAll(r2.Body)
		conn.Close()
		if err != nil || len(body) != size {
			t.Fatalf("download %d: got %d bytes, %v", size, len(body), err)
		}
	}
}

// A head that arrives a byte at a time is parsed once per line, not once
// per byte, and still gets the right answer (200, or 414 for a long target).
func TestHeadByteByByte(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, func(o *Options) { o.Server.MaxURISize = 1024 })
	for _, tc := range []struct {
		raw  string
		want string
	}{
		{"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: slow\r\n\r\n", "HTTP/1.1 200 "},
		{"GET /" + strings.Repeat("y", 1100), "HTTP/1.1 414 "},
	} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		go func() {
			for i := 0; i < len(tc.raw); i++ {
				if _, err := c.Write([]byte{tc.raw[i]}); err != nil {
					return
				}
				if i%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 13)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != tc.want {
			t.Errorf("byte-by-byte %.30q: got %q %v, want %q", tc.raw, got, err, tc.want)
		}
		c.Close()
	}
}

// limitedProxy starts pace in front of b with a limit of 2 requests a
// minute, trusting trusted; tweak, if not nil, changes more.
func limitedProxy(t *testing.T, b string, trusted string, tweak func(o *Options)) *testProxy {
	return startProxy(t, []string{b}, func(o *Options) {
		on := true
		o.RateLimit.Enabled = &on
		o.RateLimit.MaxRequests = 2
		o.RateLimit.WindowSeconds = 60
		o.RateLimit.TrustedProxies = []string{trusted}
		if tweak != nil {
			tweak(o)
		}
	})
}

// statusOf sends a GET for url with fields (name, value pairs; a name
// given twice adds a second line) and returns the response status.
func statusOf(t *testing.T, c *http.Client, url string, fields ...string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Behind a trusted proxy the limit follows X-Forwarded-For; from an
// untrusted peer the header is ignored, so spoofing it buys nothing.
func TestRateLimitTrustedProxies(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	for _, tc := range []struct {
		trusted string
		want    []int // statuses for XFF a, a, a, b
	}{
		{"127.0.0.1/32", []int{200, 200, 429, 200}},
		{"10.0.0.0/8", []int{200, 200, 429, 429}},
	} {
		p := limitedProxy(t, b.addr(), tc.trusted, nil)
		c := client()
		for i, xff := range []string{"198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"} {
			// A spoofed first line, then the proxy's.
			if got := statusOf(t, c, p.url("/"), "X-Forwarded-For", "203.0.113.66", "X-Forwarded-For", xff); got != tc.want[i] {
				t.Errorf("trusted %s, request %d (XFF %s): status %d, want %d", tc.trusted, i+1, xff, got, tc.want[i])
			}
		}
	}
}

// With real_ip_header = "X-Real-IP" (a proxy that sets only X-Real-IP and
// passes the client's X-Forwarded-For on, as nginx does), the limit follows
// X-Real-IP: a fresh X-Forwarded-For per request buys nothing, and naming
// another client there spends none of its quota.
func TestRateLimitRealIPHeader(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := limitedProxy(t, b.addr(), "127.0.0.1", func(o *Options) { o.RateLimit.RealIPHeader = "X-Real-IP" })
	c := client()
	for i, tc := range []struct {
		realIP, xff string
		want        int
	}{
		{"198.51.100.1", "6.6.6.1", 200},
		{"198.51.100.1", "6.6.6.2", 200},
		{"198.51.100.1", "6.6.6.3", 429},
		{"198.51.100.2", "198.51.100.1", 200},
	} {
		if got := statusOf(t, c, p.url("/"), "X-Real-IP", tc.realIP, "X-Forwarded-For", tc.xff); got != tc.want {
			t.Errorf("request %d (X-Real-IP %s, XFF %s): status %d, want %d", i+1, tc.realIP, tc.xff, got, tc.want)
		}
	}
}

// IPv6 clients of one /64 share a limit (ipv6_prefix): an address per
// request buys a client nothing. Another /64 has its own quota.
func TestRateLimitIPv6Prefix(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := limitedProxy(t, b.addr(), "127.0.0.1", nil)
	c := client()
	want := []int{200, 200, 429, 200}
	for i, xff := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3", "2001:db8:1:3::1"} {
		if got := statusOf(t, c, p.url("/"), "X-Forwarded-For", xff); got != want[i] {
			t.Errorf("request %d (client %s): status %d, want %d", i+1, xff, got, want[i])
		}
	}
}

// The metrics endpoint is pace's own for an absolute-form target too
// (RFC 9112 section 3.2.2), and a query string does not hide it.
func TestMetricsAbsoluteFormAndQuery(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	for _, target := range []string{"http://example.com/metrics", "/metrics?x=1"} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", target)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(all), "HTTP/1.1 200 ") || !strings.Contains(string(all), "pace_client_connections") {
			t.Errorf("GET %s = %.120q, want pace's exposition", target, all)
		}
	}
	if n := b.reqs.Load(); n != 0 {
		t.Errorf("backend got %d requests for /metrics", n)
	}
}

// lockedBuffer is an io.Writer for a logger that loops write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The metrics endpoint answers methods other than GET and HEAD with 405
// and the Allow field RFC 9110 section 15.5.6 requires, keeping a
// connection that sent no body; and every answer it gives is in the
// access log, like any request's.
func TestMetricsMethodsAndAccessLog(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	var logs lockedBuffer
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.AccessLog = true
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	c := dialProxy(t, p)
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprint(c, "OPTIONS /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics?x HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" || resp.Close {
		t.Errorf("OPTIONS /metrics = %d, Allow %q, close %v, want 405, \"GET, HEAD\", keep-alive", resp.StatusCode, resp.Header.Get("Allow"), resp.Close)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET /metrics after the 405: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("GET /metrics after the 405 = %d, want 200", resp.StatusCode)
	}
	p.stop(t) // flushes the access log
	for _, want := range []string{" OPTIONS /metrics 405 ", " GET /metrics?x 200 "} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("access log has no line with %q:\n%s", want, logs.String())
		}
	}
}

// metrics.allow limits the endpoint to the listed TCP peers: others get
// 403 (nginx's "deny all"), and their request never reaches a backend.
func TestMetricsAllow(t *testing.T) {
	var hits atomic.Int64
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, "backend")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Metrics.Allow = []string{"127.0.0.2", "10.0.0.0/8"}
	})
	scrape := func(from string) (int, string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("scrape from %s: %v", from, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, body := scrape("127.0.0.2"); st != 200 || !strings.Contains(body, "pace_backend_up") {
		t.Errorf("scrape from an allowed address: %d %.40q, want 200 and the exposition", st, body)
	}
	if st, body := scrape("127.0.0.1"); st != 403 || strings.Contains(body, "pace_") {
		t.Errorf("scrape from an address not allowed: %d %.40q, want 403 and no metrics", st, body)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the backend got %d requests for /metrics, want 0", n)
	}
}

// TestRecycledSessionBuffers: closed sessions hand their field lists and
// head buffers to new clients. Clients from two addresses, with short and
// long heads, one request per connection, must each see exactly their own
// X-Forwarded-For and X-Foo at the backend, never a previous client's.
func TestRecycledSessionBuffers(t *testing.T) {
	b := newNamedBackend(t, "b1", nil)
	p := startProxy(t, []string{b.addr()}, func(o *Options) { o.Server.Workers = 1 })
	long := strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 30)
	for i := 0; i < 200; i++ {
		from := "127.0.0.1"
		if i%2 == 1 {
			from = "127.0.0.2"
		}
		pad := ""
		if i%3 == 0 {
			pad = long
		}
		xff := ""
		if i%5 == 0 {
			xff = fmt.Sprintf("X-Forwarded-For: 10.0.0.%d\r\n", i%250)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Foo: req%d\r\n%s%sConnection: close\r\n\r\n", i, pad, xff)
		all, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		wantXFF := from
		if xff != "" {
			wantXFF = fmt.Sprintf("10.0.0.%d, %s", i%250, from)
		}
		for _, want := range []string{"x-forwarded-for: " + wantXFF + "\n", fmt.Sprintf("x-foo: req%d\n", i)} {
			if !strings.Contains(string(all), want) {
				t.Fatalf("request %d from %s: response %q lacks %q", i, from, all, want)
			}
		}
	}
}

// oneShot sends a GET on a new connection and returns the status, or an
// error.
func oneShot(addr, path string) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestQueueWhenOutOfDescriptors: with descriptors for 4 clients and only 2
// backend connections, 4 slow requests at once all succeed: two dial, two
// wait and get the first two connections when their exchanges end, and no
// third dial is made. A request that waits longer than connect_timeout
// gets 503.
func TestQueueWhenOutOfDescriptors(t *testing.T) {
	testFDBudget = 6
	defer func() { testFDBudget = 0 }()
	b := newNamedBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("d")); err == nil {
			time.Sleep(d)
		}
		io.WriteString(w, "ok\n")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = config.Duration(time.Second)
	})
	// All four clients connect first, so that the budget is spent on
	// them before any request decides whether to dial.
	conns := make([]net.Conn, 4)
	for i := range conns {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		conns[i] = c
	}
	for deadline := time.Now().Add(5 * time.Second); p.e.clients.Load() < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("pace has %d clients, want 4", p.e.clients.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	statuses := make(chan int, 4)
	for _, c := range conns {
		go func(c net.Conn) {
			// Keep-alive: a client closing while a waiter is left would
			// free a descriptor and the sweep would rightly dial for it.
			fmt.Fprintf(c, "GET /?d=300ms HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Error(err)
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			statuses <- resp.StatusCode
		}(c)
	}
	for i := 0; i < 4; i++ {
		if st := <-statuses; st != 200 {
			t.Errorf("request %d: status %d, want 200", i, st)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); p.e.clients.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	m := scrape(t, p)
	if got := m["pace_upstream_dials_total"]; got != 2 {
		t.Errorf("pace_upstream_dials_total = %v, want 2 (two descriptors for backends)", got)
	}
	// Two waited for the second connection's descriptor, and a third
	// too if it came while the first dial's enroll held its extra one
	// (TestDescriptorBudgetCountsEnrolls).
	if got := m["pace_upstream_queued_total"]; got != 2 && got != 3 {
		t.Errorf("pace_upstream_queued_total = %v, want 2 or 3", got)
	}

	// Four clients hold every descriptor pace has for backends while
	// their requests last 3s; a fifth waits past connect_timeout.
	for i := 0; i < 4; i++ {
		go func() {
			st, err := oneShot(p.addr, "/?d=3s")
			if err != nil {
				t.Error(err)
			}
			statuses <- st
		}()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	st, err := oneShot(p.addr, "/")
	if err != nil || st != 503 {
		t.Errorf("request past the queue timeout: %d, %v; want 503", st, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("503 after %v, want after about connect_timeout (1s)", d)
	}
	for i := 0; i < 4; i++ {
		<-statuses
	}
}

// scrape reads /metrics into a map from sample line (name and labels) to
// value.
func scrape(t *testing.T, p *testProxy) map[string]float64 {
	t.Helper()
	resp, body := get(t, client(), p.url("/metrics"))
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// A dial in flight holds two descriptors until gnet has enrolled it:
// Enroll registers a duplicate and closes the original only afterwards.
// The budget counts both, so a burst of dials cannot run pace out of
// descriptors (before, under prlimit --nofile=256 with every backend
// response closing its connection, ~1% of requests got 502 from EMFILE,
// and the backend was marked down for pace's own shortage).
func TestDescriptorBudgetCountsEnrolls(t *testing.T) {
	testFDBudget = 4
	defer func() { testFDBudget = 0 }()
	addr, release := heldListener(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ConnectTimeout = config.Duration(5 * time.Second)
	})
	// Client A's dial hangs: A, its backend connection and the enroll
	// to come spend three of the four descriptors.
	a, b := dialProxy(t, p), dialProxy(t, p)
	fmt.Fprintf(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	for deadline := time.Now().Add(5 * time.Second); p.e.uplinks.Load() < 1; {
		if time.Now().After(deadline) {
			t.Fatal("no dial started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// B is the fourth: its request waits for A's connection.
	fmt.Fprintf(b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	if n := p.e.uplinks.Load(); n != 1 {
		t.Fatalf("%d backend connections with %d clients and a budget of 4, want 1 (the second request queued)", n, p.e.clients.Load())
	}
	release()
	for _, c := range []net.Conn{a, b} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after release: %v, %v", resp, err)
		}
	}
	if got := scrape(t, p)["pace_upstream_queued_total"]; got != 1 {
		t.Errorf("pace_upstream_queued_total = %v, want 1", got)
	}
}

// An error in a request body gets a response whose text matches its
// status (it said "400 Bad Request" under a 431 before), and a TLS
// handshake sent to the plain-HTTP port is named as such.
func TestBadInputResponseText(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	for _, tc := range []struct{ name, in, want string }{
		{"huge trailer", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n",
			"431 Request Header Fields Too Large: "},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			"400 Bad Request: codec: malformed chunked encoding"},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", "400 Bad Request: codec: TLS handshake on a plain-HTTP port"},
	} {
		resp := sendRaw(t, p, tc.in)
		body, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(body), tc.want) || !strings.HasPrefix(string(body), strconv.Itoa(resp.StatusCode)+" ") {
			t.Errorf("%s: %d %q, want a body starting %q", tc.name, resp.StatusCode, body, tc.want)
		}
	}
}

// X-Forwarded-Proto and X-Real-IP describe the client's connection: pace
// sets them from its own peer, except for a peer in trusted_proxies (nginx
// terminating TLS in front), whose values go on as sent. Before, a trusted
// nginx's "X-Forwarded-Proto: https" became "http", and any client's
// X-Real-IP reached the backends unchanged. The other forwarding fields
// (Forwarded, X-Forwarded-Host, X-Forwarded-Port) reach the backend only
// from a trusted proxy: a client's "host=evil.example" would otherwise be
// believed as much as pace's X-Forwarded-Proto.
func TestForwardedFieldsTrust(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%q real=%q", r.Header.Values("X-Forwarded-Proto"), r.Header.Values("X-Real-Ip"))
		if f := r.Header.Values("Forwarded"); f != nil {
			fmt.Fprintf(w, " fwd=%q", f)
		}
		if f := r.Header.Values("X-Forwarded-Host"); f != nil {
			fmt.Fprintf(w, " host=%q", f)
		}
		if f := r.Header.Values("X-Forwarded-Port"); f != nil {
			fmt.Fprintf(w, " port=%q", f)
		}
	})
	spoof := map[string]string{"Forwarded": "for=6.6.6.6;host=evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "443"}
	for _, tc := range []struct {
		trusted []string
		send    map[string]string
		want    string
	}{
		{nil, map[string]string{"X-Forwarded-Proto": "https", "X-Real-IP": "7.7.7.7"}, `proto=["http"] real=["127.0.0.1"]`},
		{nil, nil, `proto=["http"] real=["127.0.0.1"]`},
		{nil, spoof, `proto=["http"] real=["127.0.0.1"]`},
		{[]string{"127.0.0.1"}, map[string]string{"X-Forwarded-Proto": "https", "X-Real-IP": "7.7.7.7"}, `proto=["https"] real=["7.7.7.7"]`},
		{[]string{"127.0.0.1"}, map[string]string{"X-Forwarded-For": "9.9.9.9"}, `proto=["http"] real=["9.9.9.9"]`},
		{[]string{"127.0.0.1"}, spoof, `proto=["http"] real=["127.0.0.1"] fwd=["for=6.6.6.6;host=evil.example"] host=["evil.example"] port=["443"]`},
		{[]string{"10.0.0.0/8"}, map[string]string{"X-Forwarded-Proto": "https", "X-Real-IP": "7.7.7.7"}, `proto=["http"] real=["127.0.0.1"]`},
	} {
		p := startProxy(t, []string{b.addr()}, func(o *Options) { o.RateLimit.TrustedProxies = tc.trusted })
		req, _ := http.NewRequest("GET", p.url("/"), nil)
		for k, v := range tc.send {
			req.Header.Set(k, v)
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Errorf("trusted %v, sent %v: backend saw %s, want %s", tc.trusted, tc.send, body, tc.want)
		}
		p.stop(t)
	}
}

// The client gets exactly one X-Backend, pace's: a backend's own (an
// internal name, say) is dropped, as a client's X-Proxy is on the way in.
func TestBackendXBackendReplaced(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "internal-db-7.corp:5432")
		fmt.Fprint(w, "ok")
	})
	p := startProxy(t, []string{b.addr()}, nil)
	defer p.stop(t)
	resp, err := client().Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := resp.Header.Values("X-Backend"), []string{b.addr()}; !slices.Equal(got, want) {
		t.Errorf("X-Backend = %q, want %q", got, want)
	}
}

// Request fields with '_' in their names are dropped unless
// underscores_in_headers is set, as in nginx: X_Forwarded_For must not
// reach a CGI-style backend as a second X-Forwarded-For.
func TestUnderscoreFieldsDropped(t *testing.T) {
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q %q", r.Header.Values("X_forwarded_for"), r.Header.Values("X-Ok"))
	})
	for _, keep := range []bool{false, true} {
		p := startProxy(t, []string{b.addr()}, func(o *Options) { o.Server.UnderscoresInHeaders = keep })
		resp := sendRaw(t, p, "GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\n\r\n")
		body, _ := io.ReadAll(resp.Body)
		want := `[] ["1"]`
		if keep {
			want = `["6.6.6.6"] ["1"]`
		}
		if string(body) != want {
			t.Errorf("underscores_in_headers = %v: backend saw %s, want %s", keep, body, want)
		}
		p.stop(t)
	}
}

// A request rejected as malformed is counted under its method when its
// request line shows one (before, always OTHER).
func TestBadRequestKeepsItsMethod(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	if resp := sendRaw(t, p, "DELETE /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("duplicate Host: %d, want 400", resp.StatusCode)
	}
	const key = `http_requests_duration_seconds_count{method="DELETE",status="400"}`
	if v := scrape(t, p)[key]; v != 1 {
		t.Fatalf("%s = %v, want 1", key, v)
	}
}

// Bytes a backend sends after a complete response answer nothing: the
// connection is closed, never reused, so they cannot become the next
// request's response, pipelined on the same client or from another one.
// The hard case is a response that ends exactly where a read ends (64 KiB,
// gnet's read buffer): nothing is left in pace's buffer, but the extra
// bytes still sit in the socket. The loop is held while the backend writes
// so that the read finds everything there; before the fix the next request
// got "EVIL!".
func TestExtraBytesAfterResponseNeverReused(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
	for _, tc := range []struct {
		name      string
		total     int // first response, head included
		pipelined bool
	}{
		{"same read", 1000, true},
		{"read boundary", readBufferCap, true},
		{"two reads", 2 * readBufferCap, true},
		{"read boundary, other client", readBufferCap, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got1, write := make(chan struct{}), make(chan struct{})
			var served atomic.Int32
			addr := rawBackend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					if _, err := readHead(br); err != nil {
						return
					}
					if served.Add(1) == 1 {
						close(got1)
						<-write
						head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %06d\r\n\r\n", tc.total-43)
						c.Write([]byte(head + strings.Repeat("a", tc.total-len(head)) + evil))
						continue
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"))
				}
			})
			p := startProxy(t, []string{addr}, func(o *Options) { o.Server.Workers = 1 })
			defer p.stop(t)
			a, lp := dialLoop(t, p)
			defer a.Close()
			second := a
			if tc.pipelined {
				fmt.Fprint(a, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
			} else {
				fmt.Fprint(a, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
				second = dialProxy(t, p)
				defer second.Close()
			}
			<-got1
			unblock := make(chan struct{})
			lp.exec(func() { <-unblock })
			close(write)
			if !tc.pipelined {
				fmt.Fprint(second, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			time.Sleep(50 * time.Millisecond) // all of it in the sockets
			close(unblock)
			br := bufio.NewReader(a)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if len(b) != tc.total-43 {
				t.Fatalf("first response: %d bytes, want %d", len(b), tc.total-43)
			}
			if !tc.pipelined {
				br = bufio.NewReader(second)
			}
			second.SetDeadline(time.Now().Add(10 * time.Second))
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "good" {
				t.Errorf("second request got %d %q, want 200 \"good\"", resp.StatusCode, b)
			}
		})
	}
}

// The rate limiter's expired keys are released even when no request comes
// to sweep them, with no client connected at all, so pace_ratelimit_keys
// and the memory follow the clients that are left.
func TestRateLimitKeysReleasedWhenIdle(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	on := true
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.RateLimit.Enabled = &on
		o.RateLimit.MaxRequests = 5
		o.RateLimit.WindowSeconds = 1
	})
	for _, from := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := rawGet(c, "/", true); err != nil || st != 200 {
			t.Fatalf("GET from %s = %d, %v", from, st, err)
		}
		c.Close()
	}
	if n := p.e.lim.Keys(); n != 3 {
		t.Fatalf("Keys() = %d after 3 clients, want 3", n)
	}
	deadline := time.Now().Add(6 * time.Second)
	for p.e.lim.Keys() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Keys() = %d 6s after the last request (window 1s), want 0", p.e.lim.Keys())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := p.e.clients.Load(); n != 0 {
		t.Errorf("clients = %d, want 0: the test is about an idle pace", n)
	}
}

// CONNECT is refused with 405, which RFC 9110 section 15.5.6 says must
// list the methods that work.
func TestConnectRefusedWithAllow(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	c := dialProxy(t, p)
	defer c.Close()
	fmt.Fprint(c, "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	allow := resp.Header.Get("Allow")
	if resp.StatusCode != 405 || !strings.Contains(allow, "GET") || strings.Contains(allow, "CONNECT") {
		t.Errorf("CONNECT = %d, Allow %q, want 405 with an Allow list without CONNECT", resp.StatusCode, allow)
	}
	if n := b.reqs.Load(); n != 0 {
		t.Errorf("backend got %d requests, want 0", n)
	}
}

// max_body_size (nginx's client_max_body_size): a Content-Length over it
// gets 413 before any of the body reaches a backend; a chunked body gets
// 413 once its chunk sizes pass it. Bodies within it go through.
func TestMaxBodySize(t *testing.T) {
	var reqs atomic.Int64
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "got %d", n)
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.MaxBodySize = 1024
	})
	chunks := func(sizes ...int) string {
		var sb strings.Builder
		for _, n := range sizes {
			fmt.Fprintf(&sb, "%x\r\n%s\r\n", n, strings.Repeat("c", n))
		}
		return sb.String() + "0\r\n\r\n"
	}
	for _, tc := range []struct {
		name, framing, body string
		want                int
		wantBody            string
		reaches             int // whether the request reaches the backend: 1 yes, 0 no, -1 either
	}{
		{"length within", "Content-Length: 1024\r\n", strings.Repeat("x", 1024), 200, "got 1024", 1},
		{"length over", "Content-Length: 1025\r\n", strings.Repeat("x", 1025), 413, "max_body_size", 0},
		{"length over, 100-continue", "Content-Length: 4096\r\nExpect: 100-continue\r\n", "", 413, "max_body_size", 0},
		{"chunked within", "Transfer-Encoding: chunked\r\n", chunks(512, 512), 200, "got 1024", 1},
		{"chunked over", "Transfer-Encoding: chunked\r\n", chunks(512, 512, 1), 413, "Content Too Large", -1}, // the head may have gone
	} {
		before := reqs.Load()
		c := dialProxy(t, p)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\n%s\r\n%s", tc.framing, tc.body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.wantBody) {
			t.Errorf("%s: %d %q, want %d and %q", tc.name, resp.StatusCode, body, tc.want, tc.wantBody)
		}
		if tc.want == 413 && !resp.Close {
			t.Errorf("%s: the 413 keeps the connection open; the unread body would be read as a request", tc.name)
		}
		if got := reqs.Load() > before; tc.reaches >= 0 && got != (tc.reaches == 1) {
			t.Errorf("%s: reached the backend: %v, want %v", tc.name, got, tc.reaches == 1)
		}
	}
	if n := p.e.met.BadRequests.Get(); n != 0 {
		t.Errorf("bad requests counted: %d, want 0 (a 413 is a well-formed request)", n)
	}
}

// A request pace answers without parsing it (400 here, 408 below) on a
// keep-alive connection that already served one is counted and logged
// like any: it used to be taken for the request before, already counted.
func TestBadRequestAfterKeepAliveRecorded(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	var logs lockedBuffer
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.AccessLog = true
		o.Server.HeaderTimeout = dur(300 * time.Millisecond)
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for _, tc := range []struct{ second, status string }{
		{"GET /bad HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", "400"},
		{"GET /slow HTTP/1.1\r\nHost: x\r\n", "408"}, // and no more
	} {
		c := dialProxy(t, p)
		br := bufio.NewReader(c)
		fmt.Fprint(c, "GET /good HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		fmt.Fprint(c, tc.second)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("second request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		c.Close()
		if got := strconv.Itoa(resp.StatusCode); got != tc.status {
			t.Fatalf("second request: status %s, want %s", got, tc.status)
		}
	}
	var exp bytes.Buffer
	p.e.met.WritePrometheus(&exp)
	for _, st := range []string{"400", "408"} {
		if !strings.Contains(exp.String(), `status="`+st+`"`) {
			t.Errorf("no %s in the request histogram:\n%s", st, exp.String())
		}
	}
	p.stop(t)
	for _, want := range []string{" GET /bad 400 - ", " OTHER - 408 - "} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("access log has no line with %q:\n%s", want, logs.String())
		}
	}
}

// A client over max_connections is closed at once, counted, and logged,
// as nginx logs "worker_connections are not enough": an operator must not
// have to find it in a metric.
func TestMaxConnectionsLogged(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	var logs lockedBuffer
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.MaxConnections = 2
		o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	held := []net.Conn{dialProxy(t, p), dialProxy(t, p)}
	time.Sleep(100 * time.Millisecond) // both are open
	c := dialProxy(t, p)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection over max_connections 2: read %d bytes, want it closed", n)
	}
	held[0].Close() // room for the scrape
	defer held[1].Close()
	time.Sleep(100 * time.Millisecond)
	if v := scrape(t, p)["pace_client_connections_rejected_total"]; v != 1 {
		t.Errorf("pace_client_connections_rejected_total = %v, want 1", v)
	}
	if !strings.Contains(logs.String(), "max_connections reached") {
		t.Errorf("no log line for the rejected connection; log:\n%s", logs.String())
	}
}
