package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h http.Handler, method, target string, body io.Reader, hdr map[string][]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoot(t *testing.T) {
	h := newHandler("backend1")
	tests := []struct {
		target string
		hdr    map[string][]string
		want   string
	}{
		{"/", nil, "hello from backend1\nx-proxy: -\nx-forwarded-for: -\n"},
		{"/test", map[string][]string{"X-Proxy": {"pace"}, "X-Forwarded-For": {"127.0.0.1"}},
			"hello from backend1\nx-proxy: pace\nx-forwarded-for: 127.0.0.1\n"},
		{"/", map[string][]string{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2", "127.0.0.1"}},
			"hello from backend1\nx-proxy: -\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1\n"},
	}
	for _, tt := range tests {
		rec := serve(t, h, "GET", tt.target, nil, tt.hdr)
		if got := rec.Body.String(); rec.Code != 200 || got != tt.want {
			t.Errorf("GET %s %v = %d %q, want 200 %q", tt.target, tt.hdr, rec.Code, got, tt.want)
		}
		if got := rec.Header().Get("X-Backend-Name"); got != "backend1" {
			t.Errorf("GET %s: X-Backend-Name = %q, want %q", tt.target, got, "backend1")
		}
	}
}

func TestStatus(t *testing.T) {
	h := newHandler("b")
	tests := []struct {
		target   string
		wantCode int
		wantBody string
	}{
		{"/status?code=204", 204, ""},
		{"/status?code=304", 304, ""},
		{"/status?code=503", 503, "status 503\n"},
		{"/status", 200, "status 200\n"},
		{"/status?code=100", 400, "bad query parameter: code\n"},
		{"/status?code=600", 400, "bad query parameter: code\n"},
		{"/status?code=x", 400, "bad query parameter: code\n"},
	}
	for _, tt := range tests {
		rec := serve(t, h, "GET", tt.target, nil, nil)
		if rec.Code != tt.wantCode || rec.Body.String() != tt.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tt.target, rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
		}
	}
}

func pattern(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(Pattern[i%len(Pattern)])
	}
	return b.String()
}

func TestBytes(t *testing.T) {
	h := newHandler("b")
	for _, n := range []int{0, 1, 63, 64, 65, len(patternBlock), len(patternBlock) + 7, 3*len(patternBlock) + 100} {
		rec := serve(t, h, "GET", fmt.Sprintf("/bytes?n=%d", n), nil, nil)
		if got, want := rec.Body.String(), pattern(n); rec.Code != 200 || got != want {
			t.Errorf("GET /bytes?n=%d = %d, %d bytes, want 200, %d pattern bytes", n, rec.Code, len(got), n)
		}
		if got, want := rec.Header().Get("Content-Length"), fmt.Sprint(n); got != want {
			t.Errorf("GET /bytes?n=%d: Content-Length = %q, want %q", n, got, want)
		}
	}
	for _, target := range []string{"/bytes?n=-1", "/bytes?n=zz", "/bytes?n=1099511627777"} {
		if rec := serve(t, h, "GET", target, nil, nil); rec.Code != 400 {
			t.Errorf("GET %s = %d, want 400", target, rec.Code)
		}
	}
}

func TestEchoAndSha256(t *testing.T) {
	h := newHandler("b")
	for _, body := range []string{"", "x", pattern(100_000)} {
		sum := sha256.Sum256([]byte(body))
		wantSum := hex.EncodeToString(sum[:])

		rec := serve(t, h, "POST", "/echo", strings.NewReader(body), map[string][]string{"Content-Type": {"text/x-test"}})
		if rec.Code != 200 || rec.Body.String() != body {
			t.Errorf("POST /echo (%d bytes) = %d, %d bytes, want 200 and the body back", len(body), rec.Code, rec.Body.Len())
		}
		if got := rec.Header().Get("X-Body-Sha256"); got != wantSum {
			t.Errorf("POST /echo (%d bytes): X-Body-Sha256 = %q, want %q", len(body), got, wantSum)
		}
		if got := rec.Header().Get("Content-Type"); got != "text/x-test" {
			t.Errorf("POST /echo: Content-Type = %q, want %q", got, "text/x-test")
		}

		rec = serve(t, h, "POST", "/sha256", strings.NewReader(body), nil)
		want := fmt.Sprintf("%s %d\n", wantSum, len(body))
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("POST /sha256 (%d bytes) = %d %q, want 200 %q", len(body), rec.Code, rec.Body.String(), want)
		}
	}
}

func TestEchoTooLarge(t *testing.T) {
	h := newHandler("b")
	rec := serve(t, h, "POST", "/echo", io.LimitReader(zeroReader{}, maxEchoBody+1), nil)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /echo (64 MiB + 1) = %d, want 413", rec.Code)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestHeadersDump(t *testing.T) {
	h := newHandler("b")
	rec := serve(t, h, "GET", "/headers?a=1", nil, map[string][]string{
		"X-Proxy": {"pace"}, "Accept": {"a", "b"},
	})
	want := "GET /headers?a=1 HTTP/1.1\nHost: example.com\nAccept: a\nAccept: b\nX-Proxy: pace\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("GET /headers = %q, want %q", got, want)
	}
}

func TestDelay(t *testing.T) {
	h := newHandler("b")
	start := time.Now()
	rec := serve(t, h, "GET", "/delay?ms=30", nil, nil)
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("GET /delay?ms=30 answered after %v, want >= 30ms", el)
	}
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "hello from b\n") {
		t.Errorf("GET /delay?ms=30 = %d %q, want 200 hello", rec.Code, rec.Body.String())
	}
	if rec := serve(t, h, "GET", "/delay?ms=-5", nil, nil); rec.Code != 400 {
		t.Errorf("GET /delay?ms=-5 = %d, want 400", rec.Code)
	}
}

// TestOverTheWire checks the framing choices net/http makes for us: chunked
// /bytes, no body on 204, and /close closing without a response.
func TestOverTheWire(t *testing.T) {
	srv := httptest.NewServer(newHandler("backend2"))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/bytes?n=100000&chunked=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || string(body) != pattern(100000) {
		t.Errorf("GET /bytes?n=100000&chunked=1: TransferEncoding = %v, %d bytes, want [chunked], 100000 pattern bytes", resp.TransferEncoding, len(body))
	}
	resp, err = http.Get(srv.URL + "/bytes?n=10&chunked=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.TransferEncoding) != 1 {
		t.Errorf("GET /bytes?n=10&chunked=1: TransferEncoding = %v, want [chunked]", resp.TransferEncoding)
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	fmt.Fprintf(conn, "GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Proxy: pace\r\n\r\n")
	r1, err := http.ReadResponse(br, nil)
	if err != nil || r1.StatusCode != 204 || r1.ContentLength > 0 {
		t.Fatalf("GET /status?code=204 = %v, %v; want 204 without body", r1, err)
	}
	r2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(r2.Body)
	if want := "hello from backend2\nx-proxy: pace\nx-forwarded-for: -\n"; string(b2) != want {
		t.Errorf("pipelined GET / = %q, want %q", b2, want)
	}

	c2, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("GET /close read %d bytes, err %v; want 0 bytes and EOF", n, err)
	}

	req, _ := http.NewRequest("POST", srv.URL+"/headers", chunkedBody("abc"))
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b3, []byte("\nTransfer-Encoding: chunked\n")) {
		t.Errorf("POST /headers (chunked) = %q, want a Transfer-Encoding: chunked line", b3)
	}
}

// chunkedBody hides the length of s so the client sends it chunked.
func chunkedBody(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

// nopWriter is a ResponseWriter that keeps one header map and drops bytes,
// so AllocsPerRun measures the handler alone.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

func TestRootZeroAlloc(t *testing.T) {
	h := newHandler("backend1")
	req := httptest.NewRequest("GET", "/", nil)
	req.Header["X-Proxy"] = []string{"pace"}
	req.Header["X-Forwarded-For"] = []string{"127.0.0.1"}
	w := &nopWriter{h: make(http.Header)}
	h.ServeHTTP(w, req)
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) }); n != 0 {
		t.Errorf("ServeHTTP(GET /) allocs = %v, want 0", n)
	}
}

func BenchmarkRoot(b *testing.B) {
	h := newHandler("backend1")
	req := httptest.NewRequest("GET", "/", nil)
	req.Header["X-Proxy"] = []string{"pace"}
	req.Header["X-Forwarded-For"] = []string{"127.0.0.1"}
	w := &nopWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

func BenchmarkRootOverLoopback(b *testing.B) {
	srv := httptest.NewServer(newHandler("backend1"))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(srv.URL)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// startFast runs a -fast server on a free port for the test's lifetime.
func startFast(t *testing.T) string {
	t.Helper()
	s := newFastServer("backend1")
	errc := make(chan error, 1)
	go func() { errc <- s.run("127.0.0.1:0", 2) }()
	var addr string
	select {
	case addr = <-s.addr:
	case err := <-errc:
		t.Fatalf("fast server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("fast server did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		<-errc
	})
	return addr
}

// TestFastMatchesHandler: -fast answers like the net/http handler's GET /.
func TestFastMatchesHandler(t *testing.T) {
	addr := startFast(t)
	h := newHandler("backend1")
	tests := []map[string][]string{
		nil,
		{"X-Proxy": {"pace"}, "X-Forwarded-For": {"127.0.0.1"}},
		{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2", "127.0.0.1"}, "X-Proxy": {"a", "b"}},
	}
	for _, hdr := range tests {
		req, _ := http.NewRequest("GET", "http://"+addr+"/anything?x=1", nil)
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := serve(t, h, "GET", "/", nil, hdr)
		if string(got) != want.Body.String() || resp.StatusCode != 200 {
			t.Errorf("fast GET with %v = %d %q, want 200 %q", hdr, resp.StatusCode, got, want.Body.String())
		}
		if g := resp.Header.Get("X-Backend-Name"); g != "backend1" {
			t.Errorf("X-Backend-Name = %q, want backend1", g)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("missing Date or Content-Type: %v", resp.Header)
		}
	}
}

// TestFastPipelineAndBodies: pipelined requests with bodies, sent in one
// write and then byte by byte, get their answers in order on one
// connection; bodies are skipped, not taken for requests.
func TestFastPipelineAndBodies(t *testing.T) {
	addr := startFast(t)
	msgs := "POST /a HTTP/1.1\r\nHost: x\r\nX-Proxy: one\r\nContent-Length: 5\r\n\r\nGET /" +
		"POST /b HTTP/1.1\r\nHost: x\r\nX-Proxy: two\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nGET\r\n0\r\nT: v\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\nX-Proxy: three\r\n\r\n"
	for _, bytewise := range []bool{false, true} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if bytewise {
			for i := 0; i < len(msgs); i++ {
				c.Write([]byte{msgs[i]})
			}
		} else {
			c.Write([]byte(msgs))
		}
		br := bufio.NewReader(c)
		for _, want := range []string{"one", "two", "three"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("bytewise=%v: response for %s: %v", bytewise, want, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "x-proxy: "+want+"\n") {
				t.Errorf("bytewise=%v: response body %q, want x-proxy: %s", bytewise, body, want)
			}
		}
		c.Close()
	}
}

// TestFastClose: HTTP/1.0 and Connection: close end the connection after
// the answer; a malformed head gets 400 and a close.
func TestFastClose(t *testing.T) {
	addr := startFast(t)
	tests := []struct {
		req, status, conn string
	}{
		{"GET / HTTP/1.0\r\n\r\n", "200", "close"},
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "close"},
		{"GET / HTTP/1.1\r\n\r\n", "400", "close"}, // no Host
		{"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", "400", "close"},
	}
	for _, tt := range tests {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(tt.req))
		all, err := io.ReadAll(c) // ends only if the server closes
		c.Close()
		if err != nil {
			t.Errorf("%q: read: %v", tt.req, err)
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
		if err != nil {
			t.Errorf("%q: %v in %q", tt.req, err, all)
			continue
		}
		if got := strconv.Itoa(resp.StatusCode); got != tt.status || !resp.Close {
			t.Errorf("%q = %s close=%v, want %s and a close", tt.req, got, resp.Close, tt.status)
		}
	}
}
