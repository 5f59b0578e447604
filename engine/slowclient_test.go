package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pace-proxy/pace/metrics"
)

// Clients that send faster than they read: pipelined requests behind a
// download, requests pace answers itself, and pauses in reading.

// A client that pipelines requests pace answers itself (/metrics here,
// 429s alike) and never reads the answers must not make pace queue them
// without bound: pace takes no more requests until the client catches up
// and stops reading it, so that TCP holds the client back, as nginx does.
// Before, 4 MB of such requests made ~120,000 responses (over 200 MB) wait
// in pace's memory for a client that never read them.
func TestPipelinedLocalAnswersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pace binary")
	}
	t.Parallel()
	be := newNamedBackend(t, "b", nil)
	listen := freeAddr(t)
	cmd := runPace(t, listen, bpConfig(listen, be.addr()))
	// A few scrapes first, so that every histogram series exists and
	// each answer has its full size.
	for i := 0; i < 3; i++ {
		if st, err := rawStatus(listen); err != nil || st != 200 {
			t.Fatalf("warm-up: %d, %v", st, err)
		}
	}
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	base := rssBytes(cmd.Process.Pid)
	stop := make(chan struct{})
	peak := peakRSS(cmd.Process.Pid, stop)

	// More than the kernel's buffers on both sides can hold (a few MB
	// each on loopback): the writes stop when pace stops reading.
	const total = 32 << 20
	req := []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	batch := bytes.Repeat(req, (64<<10)/len(req))
	sent := 0
	for sent < total {
		conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := conn.Write(batch)
		sent += n
		if err != nil {
			break // held back (the deadline), or closed
		}
	}
	if sent >= total {
		t.Fatalf("pace took all %d MiB of pipelined requests from a client that reads nothing: nothing held it back", total>>20)
	}
	close(stop)
	p := <-peak
	t.Logf("pipelined /metrics, never read: sent %d KiB; pace RSS %d MiB at start, peak %d MiB", sent>>10, base>>20, p>>20)
	if p-base > 24<<20 {
		t.Fatalf("pace RSS grew by %d MiB for a client that never read its answers, want < 24 MiB", (p-base)>>20)
	}
	if st, err := rawStatus(listen); err != nil || st != 200 {
		t.Fatalf("another client afterwards: %d, %v", st, err)
	}
}

// A client may pipeline requests behind a download it reads slowly
// (RFC 9112 section 9.3.2); while their answers cannot be queued, pace
// stops reading the client, and answers every request in order. Once,
// input over buffer_limit with output still queued reset the connection
// mid-download.
func TestPipelinedBehindSlowDownload(t *testing.T) {
	const big = 4 << 20
	be := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(big))
			w.Write(pattern(big))
			return
		}
		io.WriteString(w, "small "+r.URL.Path)
	})
	p := startProxy(t, []string{be.addr()}, func(o *Options) {
		o.Server.BufferLimit = 64 << 10 // hard bound 192 KiB
		o.Server.Workers = 1
	})
	conn := dialProxy(t, p)
	conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // the download fills every buffer
	var pipe bytes.Buffer
	n := 0
	for pipe.Len() < 100<<10 { // over buffer_limit, under the hard bound
		fmt.Fprintf(&pipe, "GET /s%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
		n++
	}
	if _, err := conn.Write(pipe.Bytes()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, pattern(big)) {
		t.Fatalf("download: %d of %d bytes, %v", len(body), big, err)
	}
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined response %d of %d: %v", i, n, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := "small /s" + strconv.Itoa(i); resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("pipelined response %d = %d %q, want 200 %q", i, resp.StatusCode, b, want)
		}
	}
}

// A response held back because the client reads slowly is timed by
// send_timeout, not by the backend's response_timeout: a client pausing
// longer than response_timeout still gets all of it, with no timeout
// counted against the backend, and a client that stops reading is closed
// after send_timeout.
func TestSendTimeoutGovernsSlowClient(t *testing.T) {
	const big = 8 << 20
	be := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(big))
		w.Write(pattern(big))
	})
	p := startProxy(t, []string{be.addr()}, func(o *Options) {
		o.Server.BufferLimit = 64 << 10
		// send_timeout counts from the last time pace could hand the
		// kernel more, and the kernel's own buffers (megabytes on
		// loopback) lag behind the client's reads: keep a margin.
		o.Server.SendTimeout = dur(3 * time.Second)
		o.Upstreams.ResponseTimeout = dur(300 * time.Millisecond)
	})
	fetch := func(pause time.Duration) (int, error) {
		conn := dialProxy(t, p)
		conn.(*net.TCPConn).SetReadBuffer(16 << 10)
		fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReaderSize(conn, 4<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		buf := make([]byte, 4<<10)
		got, err := io.ReadFull(resp.Body, buf)
		if err != nil {
			return got, err
		}
		time.Sleep(pause)
		n, err := io.Copy(io.Discard, resp.Body)
		return got + int(n), err
	}
	// Paused for three response_timeouts, within send_timeout.
	if got, err := fetch(time.Second); err != nil || got != big {
		t.Fatalf("client pausing 1s (response_timeout 0.3s, send_timeout 3s): got %d of %d bytes, %v", got, big, err)
	}
	key := `pace_upstream_errors_total{backend="` + be.addr() + `",kind="timeout"}`
	if v, ok := scrape(t, p)[key]; !ok || v != 0 {
		t.Fatalf("%s = %v (present %v), want 0: a slow client is not a backend timeout", key, v, ok)
	}
	// Stopped reading for longer than send_timeout (plus one interval in
	// which the kernel buffers may still have drained a little).
	start := time.Now()
	got, err := fetch(8 * time.Second)
	if err == nil || got == big {
		t.Fatalf("client pausing 8s (send_timeout 3s): got all %d bytes, want the connection closed", got)
	}
	if !strings.Contains(err.Error(), "reset") && err != io.ErrUnexpectedEOF {
		t.Logf("closed after %v with %v", time.Since(start), err)
	}
}

// A close-delimited body ends only at the backend's clean FIN. One cut by
// a reset must reach the client as a reset too, never as a clean end that
// passes the truncated body off as complete.
func TestResetEndsNoCloseDelimitedBody(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		c.Write(bytes.Repeat([]byte("x"), 1000))
		time.Sleep(100 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0) // close with RST
	})
	p := startProxy(t, []string{be}, nil)
	resp := sendRaw(t, p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("read %d bytes and a clean end, want an error: the backend reset mid-body", len(body))
	}
	key := `pace_upstream_errors_total{backend="` + be + `",kind="closed"}`
	if v := scrape(t, p)[key]; v != 1 {
		t.Fatalf("%s = %v, want 1", key, v)
	}
}

// A request whose response was cut short after its head is still counted
// in http_requests_duration_seconds, under the status sent: when the
// backend breaks off and when the client leaves. Before, only a client
// leaving before the head was counted (as 499).
func TestCutResponsesCounted(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := readHead(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
		c.Write(bytes.Repeat([]byte("x"), 1000))
		if strings.Contains(h, "/backend-breaks") {
			time.Sleep(50 * time.Millisecond)
			return // closes 99,000 bytes short
		}
		time.Sleep(3 * time.Second) // the client leaves first
	})
	p := startProxy(t, []string{be}, nil)
	// DELETE: the scrapes themselves are counted as GET 200.
	const key = `http_requests_duration_seconds_count{method="DELETE",status="200"}`
	for i, path := range []string{"/backend-breaks", "/client-leaves"} {
		conn := dialProxy(t, p)
		fmt.Fprintf(conn, "DELETE %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if path == "/backend-breaks" {
			io.Copy(io.Discard, resp.Body)
		}
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for scrape(t, p)[key] != float64(i+1) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if v := scrape(t, p)[key]; v != float64(i+1) {
			t.Fatalf("after %s: %s = %v, want %d", path, key, v, i+1)
		}
	}
}

// A client that reads steadily but slowly gets the whole response even when
// its tail is still queued in pace for longer than idle_timeout after the
// backend finished: idle time starts once the response is sent, and a
// close waits for the client's progress (send_timeout), as in nginx.
// Before, the tail was dropped at idle_timeout with a FIN, so a
// close-delimited body looked complete with up to buffer_limit missing.
func TestSlowReaderGetsTailPastIdleTimeout(t *testing.T) {
	const size = 256 << 10
	be := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cl") != "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Write(pattern(size)) // chunked without cl: close-delimited to HTTP/1.0
	})
	p := startProxy(t, []string{be.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.IdleTimeout = dur(200 * time.Millisecond)
		o.Server.BufferLimit = 64 << 10
	})
	defer p.stop(t)
	for _, req := range []string{
		"GET /?cl=1 HTTP/1.1\r\nHost: x\r\n\r\n", // keep-alive: done() sets the idle deadline
		"GET / HTTP/1.0\r\n\r\n",                 // close-delimited: closeGracefully flushes
	} {
		conn, lp := dialLoop(t, p)
		conn.(*net.TCPConn).SetReadBuffer(8 << 10)
		set := make(chan struct{})
		lp.exec(func() { // keep the kernel from absorbing the tail
			for s := lp.sessions.next; s != &lp.sessions; s = s.next {
				if s.cl.c != nil {
					_ = s.cl.c.SetWriteBuffer(8 << 10)
				}
			}
			close(set)
		})
		<-set
		fmt.Fprint(conn, req)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4<<10), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		got, buf := 0, make([]byte, 4<<10)
		for {
			n, err := resp.Body.Read(buf)
			got += n
			if err != nil {
				if err != io.EOF {
					t.Errorf("%q: read %d of %d bytes, then %v", req, got, size, err)
				}
				break
			}
			time.Sleep(30 * time.Millisecond) // ~130 KB/s: the tail takes longer than idle_timeout
		}
		if got != size {
			t.Errorf("%q: got %d of %d bytes, want all of them", req, got, size)
		}
		conn.Close()
	}
}

// A backend that reads a large upload slowly but steadily has not
// stalled. pace writes more body only when the kernel wakes it, once a
// third of a send buffer of up to 4 MiB is free, so the gap between two
// writes can pass response_timeout while the backend reads all along: it
// got 504, and a mark against it. response_timeout now restarts while the
// socket's send queue shrinks.
func TestSlowSteadyUploadIsNotATimeout(t *testing.T) {
	const size = 4 << 20
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		buf := make([]byte, 16<<10)
		got := 0
		for got < size {
			n, err := br.Read(buf)
			got += n
			if err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // about 1.6 MiB/s
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(strconv.Itoa(got)), got)
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(100 * time.Millisecond)
	})
	conn := dialProxy(t, p)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		io.WriteString(conn, fmt.Sprintf("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
		conn.Write(make([]byte, size))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != strconv.Itoa(size) {
		t.Fatalf("upload of %d bytes to a backend reading it at ~1.6 MiB/s: %d %q, want 200 %d", size, resp.StatusCode, b, size)
	}
	if n := p.e.met.UpstreamErrors(0, metrics.ErrTimeout); n != 0 {
		t.Fatalf("timeouts counted against the backend: %d, want 0", n)
	}
}

// Interim (1xx) heads go through the same backpressure as a body: a
// backend sending 103s without end to a client that reads nothing gets
// paused once buffer_limit is queued, instead of pace queueing all it
// sends, and the client is closed after send_timeout. pace used to queue
// everything (a review saw 630 MiB) and never time the client out, since
// each 1xx restarted response_timeout.
func TestInterimFloodHeldForSlowClient(t *testing.T) {
	const flood = 256 << 20
	var written atomic.Int64
	stopped := make(chan error, 1)
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		h := "HTTP/1.1 103 Early Hints\r\nLink: </" + strings.Repeat("a", 16<<10) + ">; rel=preload\r\n\r\n"
		for written.Load() < flood {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := io.WriteString(c, h)
			written.Add(int64(n))
			if err != nil {
				stopped <- err
				return
			}
		}
		stopped <- nil
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.SendTimeout = dur(time.Second)
		o.Upstreams.ResponseTimeout = dur(30 * time.Second)
	})
	conn := dialProxy(t, p)
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(conn, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
	var err error
	select {
	case err = <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatalf("backend still writing after 20s (%d MiB written)", written.Load()>>20)
	}
	// Kernel buffers on both sides, plus buffer_limit (256 KiB), take a
	// few MiB on loopback; without the bound the backend wrote it all.
	if n := written.Load(); err == nil || n > 32<<20 {
		t.Fatalf("backend wrote %d MiB of 1xx heads to a client reading none (write error %v); want it held to a few MiB and its connection closed after send_timeout", n>>20, err)
	}
	t.Logf("backend wrote %d KiB of 1xx heads before pace closed the exchange: %v", written.Load()>>10, err)
}
