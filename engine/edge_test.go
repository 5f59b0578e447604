package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pace-proxy/pace/metrics"
)

// Edge cases of this package's own bookkeeping, each found by a review:
// waits that must end, counts that must not double, deadlines that must
// follow what is actually awaited.

// A dial that meets EMFILE (pace itself out of descriptors, though the
// budget said otherwise) makes the request wait for a busy connection,
// but a shortage that lasts must end in 503. Before, the request was
// requeued with a fresh deadline and redialed on every sweep, forever.
// With the only backend down (in cool-down), the first attempt still
// falls back on it, and the wait still ends in 503: a review found it
// ended in "no backend" (502), the redial being taken for a retry, which
// never goes to a down backend.
func TestEMFILEWaitEndsIn503(t *testing.T) {
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("backend down %v", down), func(t *testing.T) {
			be := newNamedBackend(t, "b", nil)
			p := startProxy(t, []string{be.addr()}, func(o *Options) {
				o.Server.Workers = 1
				o.Upstreams.ConnectTimeout = dur(500 * time.Millisecond)
			})
			c := dialProxy(t, p)
			for deadline := time.Now().Add(5 * time.Second); p.e.clients.Load() < 1; {
				if time.Now().After(deadline) {
					t.Fatal("not accepted")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if down {
				b0 := p.e.bal.Backends[0]
				for i := 0; i < 5; i++ {
					p.e.bal.Failure(b0, nanotime())
				}
				if b0.Up(nanotime()) {
					t.Fatal("the backend is still up")
				}
			}
			// Run the process out of descriptors: lower the soft limit,
			// fill every free slot below it.
			var old syscall.Rlimit
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
			lim := old
			lim.Cur = 2048
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Skip("cannot lower RLIMIT_NOFILE:", err)
			}
			var fds []int
			for {
				fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					break
				}
				fds = append(fds, fd)
			}
			release := func() {
				for _, fd := range fds {
					unix.Close(fd)
				}
				fds = nil
				syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
			}
			defer release()
			t.Logf("filled %d descriptors", len(fds))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			type res struct {
				st  int
				err error
			}
			ch := make(chan res, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(4 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					ch <- res{0, err}
					return
				}
				ch <- res{resp.StatusCode, nil}
			}()
			var r res
			select {
			case r = <-ch:
			case <-time.After(4500 * time.Millisecond):
			}
			release()
			if r.err != nil || r.st != 503 {
				t.Fatalf("with EMFILE for 4 s and connect_timeout 0.5 s: status %d, err %v; want 503 within ~1 s", r.st, r.err)
			}
		})
	}
}

// An answer pace makes itself (a 502 here) whose write to the client
// fails: gnet closes the client from inside Write, and closed() ran
// unfinished() (the session still in stExchange, its status set) before
// local() counted the request again. It is counted once.
func TestLocalAnswerCountedOnceWhenWriteFails(t *testing.T) {
	got := make(chan net.Conn, 1)
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		got <- c
		time.Sleep(3 * time.Second)
	})
	p := startProxy(t, []string{be}, func(o *Options) { o.Server.Workers = 1 })
	c := dialProxy(t, p)
	fmt.Fprintf(c, "DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n")
	var bc net.Conn
	select {
	case bc = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("backend got no request")
	}
	p.e.mu.Lock()
	lp := p.e.loops[0]
	p.e.mu.Unlock()
	// Hold the loop while the backend answers garbage and then the
	// client resets: both events come out of one epoll_wait, the
	// backend's first.
	blocked := make(chan struct{})
	lp.exec(func() { close(blocked); time.Sleep(300 * time.Millisecond) })
	<-blocked
	bc.Write([]byte("garbage\r\n\r\n"))
	time.Sleep(50 * time.Millisecond)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	time.Sleep(600 * time.Millisecond)
	const key = `http_requests_duration_seconds_count{method="DELETE",status="502"}`
	m := scrape(t, p)
	t.Logf("%s = %v; 499: %v", key, m[key], m[`http_requests_duration_seconds_count{method="DELETE",status="499"}`])
	if v := m[key]; v != 1 {
		t.Fatalf("%s = %v, want 1: one request", key, v)
	}
}

// The send deadline set while a response waited for a slow client must
// end with that wait. Here the client drains everything and gets parked
// for its pipelined input, then the backend pauses: before, the expiry of
// send_timeout aborted a client with nothing queued ("read none of its
// response"), well within response_timeout.
func TestSendDeadlineEndsWithTheStall(t *testing.T) {
	const limit = 32 << 10
	const total = 64 << 20
	phase := make(chan int, 4) // 1: one 4 KiB piece; 2: the 40 KiB piece; 3: the rest
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", total)
		sent := 0
		for ph := range phase {
			var n int
			switch ph {
			case 1:
				n = 4 << 10
			case 2:
				n = 40 << 10
			case 3:
				n = total - sent
			}
			c.Write(make([]byte, n))
			sent += n
			if ph == 3 {
				time.Sleep(2 * time.Second)
				return
			}
		}
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = limit
		o.Server.SendTimeout = dur(time.Second)
		o.Upstreams.ResponseTimeout = dur(20 * time.Second)
	})
	c := dialProxy(t, p)
	fmt.Fprintf(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	var l *loop
	var s *session
	for deadline := time.Now().Add(5 * time.Second); s == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no session")
		}
		p.e.mu.Lock()
		if len(p.e.loops) > 0 {
			l = p.e.loops[0]
		}
		p.e.mu.Unlock()
		if l != nil {
			onLoop(l, func() {
				if x := l.sessions.next; x != &l.sessions && x.st == stExchange {
					s = x
				}
			})
		}
	}
	state := func() (out int, dl uint8, upParked bool, upBuf int) {
		onLoop(l, func() {
			if s.cl.c != nil {
				out = s.cl.c.OutboundBuffered()
			}
			dl = s.dl
			if s.up != nil {
				upParked, upBuf = s.up.parked, s.up.buffered()
			}
		})
		return
	}
	// Phase 1: fill the kernel's buffers towards the client (which does
	// not read) until pace starts queueing.
	for i := 0; ; i++ {
		if out, _, _, _ := state(); out > 0 {
			break
		}
		if i > 4000 {
			t.Fatal("pace never queued for the client")
		}
		phase <- 1
		time.Sleep(5 * time.Millisecond)
	}
	// Phase 2: one read's worth that takes the queue over buffer_limit.
	phase <- 2
	time.Sleep(100 * time.Millisecond)
	out, dl, upParked, upBuf := state()
	t.Logf("after phase 2: client output %d, dl %d (dlSend %d), backend parked %v, its buffered %d", out, dl, dlSend, upParked, upBuf)
	if dl != dlSend || !upParked || upBuf != 0 {
		t.Skip("did not reach the state this test needs")
	}
	// Hold the loop; meanwhile the client reads what the kernel holds
	// and pipelines more than buffer_limit of requests.
	blocked := make(chan struct{})
	l.exec(func() { close(blocked); time.Sleep(400 * time.Millisecond) })
	<-blocked
	br := bufio.NewReaderSize(c, 64<<10)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	got := 0
	for {
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	t.Logf("client read %d bytes while the loop was held", got)
	var pipe []byte
	for len(pipe) < 60<<10 {
		pipe = append(pipe, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n"...)
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(pipe)
	time.Sleep(300 * time.Millisecond) // the loop runs again
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, dl, _, _ = state()
	var parkedNow bool
	onLoop(l, func() { parkedNow = s.cl.parked })
	t.Logf("client parked %v, dl %d", parkedNow, dl)
	for k, v := range scrape(t, p) {
		if strings.HasPrefix(k, "pace_backpressure") {
			t.Logf("%s = %v", k, v)
		}
	}
	// The client reads everything; the backend pauses for 3 s (well
	// within response_timeout) and then finishes.
	go func() { time.Sleep(3 * time.Second); phase <- 3 }()
	for {
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			if got != total || err != nil {
				t.Fatalf("got %d of %d bytes, err %v: want the whole response", got, total, err)
			}
			return
		}
	}
}

// An interim (1xx) response head goes to the client with the same fields
// dropped as a final one: hop-by-hop fields (RFC 9110 section 7.6.1) and
// the backend's own X-Backend, which only pace may set. It used to keep
// X-Backend, so a backend could show the client a name of its choosing.
func TestInterimResponseFieldsDropped(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: foo\r\nFoo: bar\r\nX-Backend: evil\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nX-Backend: evil\r\nContent-Length: 2\r\n\r\nok")
	})
	p := startProxy(t, []string{be}, nil)
	conn := dialProxy(t, p)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	interim, err := readHead(br)
	if err != nil {
		t.Fatalf("interim head: %q, %v", interim, err)
	}
	final, err := readHead(br)
	if err != nil {
		t.Fatalf("final head: %q, %v", final, err)
	}
	if !strings.HasPrefix(interim, "HTTP/1.1 103 ") || !strings.Contains(interim, "\r\nLink: </a.css>; rel=preload\r\n") {
		t.Fatalf("interim head %q, want the 103 with its Link", interim)
	}
	for _, bad := range []string{"evil", "Foo:", "Connection:"} {
		if strings.Contains(interim, bad) {
			t.Errorf("interim head %q contains %q", interim, bad)
		}
	}
	if !strings.HasPrefix(final, "HTTP/1.1 200 ") || strings.Contains(final, "evil") || !strings.Contains(final, "\r\nX-Backend: "+be+"\r\n") {
		t.Errorf("final head %q, want a 200 with pace's X-Backend only", final)
	}
}

// A backend whose bad chunking comes in the same read as its response
// head has sent the client nothing yet (the head waits for the first body
// bytes), so the client gets 502, as for a bad head, and its connection
// goes on. It used to be reset with no answer at all.
func TestBadChunkBeforeAnythingSentIs502(t *testing.T) {
	be := headsBackend(t, func(c net.Conn, _ *bufio.Reader, h string) bool {
		if strings.HasPrefix(h, "GET /good") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"+strings.Repeat("x", 1000)+"\r\nzz\r\n")
		return false
	})
	p := startProxy(t, []string{be}, nil)
	conn := dialProxy(t, p)
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET /bad: %v, want a 502", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 502 {
		t.Fatalf("GET /bad: status %d, want 502", resp.StatusCode)
	}
	io.WriteString(conn, "GET /good HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /good on the same connection: %v, %v; want 200", resp, err)
	}
	if n := p.e.met.UpstreamErrors(0, metrics.ErrBadResponse); n != 1 {
		t.Fatalf("bad_response errors: %d, want 1", n)
	}
}

// A close-delimited response (no Content-Length, not chunked) reaches an
// HTTP/1.1 client re-chunked, as nginx sends it, and the client's
// connection goes on to its next request; an HTTP/1.0 client gets it as
// it came, ended by pace's close.
func TestCloseDelimitedResponseRechunked(t *testing.T) {
	body := strings.Repeat("0123456789", 5000)
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		for i := 0; i < len(body); i += 7000 {
			c.Write([]byte(body[i:min(i+7000, len(body))]))
			time.Sleep(time.Millisecond)
		}
	})
	p := startProxy(t, []string{be}, nil)
	conn := dialProxy(t, p)
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		io.WriteString(conn, "GET /cd HTTP/1.1\r\nHost: x\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("request %d: %d of %d body bytes, %v", i+1, len(got), len(body), err)
		}
		if te := resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" || resp.Close {
			t.Fatalf("request %d: Transfer-Encoding %v, close %v; want chunked and the connection kept", i+1, te, resp.Close)
		}
	}
	conn.Close()

	conn = dialProxy(t, p)
	defer conn.Close()
	io.WriteString(conn, "GET /cd HTTP/1.0\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(conn)
	head, got, _ := strings.Cut(string(all), "\r\n\r\n")
	if err != nil || got != body || strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Fatalf("HTTP/1.0: head %q, %d of %d body bytes, %v; want the body as sent, then pace's close", head, len(got), len(body), err)
	}
}
