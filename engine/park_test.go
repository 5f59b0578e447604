package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startParkingProxy runs one worker with a 4 KiB buffer_limit, so that a
// client parks quickly, in front of a backend that answers "path=<path>"
// and takes 300 ms for /slow.
func startParkingProxy(t *testing.T) *testProxy {
	t.Helper()
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	})
	return startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
	})
}

// A request head split between the bytes saved when the client was parked
// (link.pend) and bytes read after unparking is parsed whole: input()
// joins them.
func TestHeadSplitAcrossPark(t *testing.T) {
	p := startParkingProxy(t)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// /slow is in flight; then more than buffer_limit of a second head,
	// not yet complete: pace parks the client with it in pend.
	fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	fmt.Fprintf(c, "GET /next HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n", strings.Repeat("p", 6000))
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "\r\n") // the head's end arrives while parked
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow", "/next"} {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "path="+want {
			t.Fatalf("response %d %q, want path=%s", resp.StatusCode, body, want)
		}
	}
}

type addingWatcher struct {
	lp    *loop
	added watcher
}

func (w *addingWatcher) poll(int64) bool {
	if w.added != nil {
		w.lp.addWatch(w.added) // e.g. finish -> closeGracefully of a session
	}
	return false
}

type countingWatcher struct{ n int }

func (w *countingWatcher) poll(int64) bool { w.n++; return true }

// A watcher added while tick runs the watchers (a poll that ends an
// exchange and starts a graceful close, or hands a connection to a waiter)
// is kept and polled.
func TestWatchAddedDuringTick(t *testing.T) {
	for _, pre := range []int{0, 3} { // with and without spare capacity
		lp := &loop{e: &Engine{wake: make(chan struct{}, 1)}}
		for i := 0; i < pre; i++ {
			lp.addWatch(&countingWatcher{})
		}
		lp.watch = append(make([]watcher, 0, len(lp.watch)+4), lp.watch...)
		late := &countingWatcher{}
		lp.addWatch(&addingWatcher{lp: lp, added: late})
		lp.tick(false)
		lp.tick(false)
		if late.n == 0 {
			t.Errorf("pre=%d: watcher added during a tick was never polled (watch=%d, watching=%d)", pre, len(lp.watch), lp.watching.Load())
		}
	}
}

// The client parked (a pipelined backlog) and the backend parked (the
// response ahead of the client) at once: neither waits on the other, and
// every response arrives.
func TestClientAndBackendParkedTogether(t *testing.T) {
	big := pattern(1 << 20)
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			time.Sleep(200 * time.Millisecond)
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
			return
		}
		io.WriteString(w, "ok")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(20 * time.Second)
	})
	for run := 0; run < 3; run++ {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		small := fmt.Sprintf("GET /small HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", strings.Repeat("p", 400))
		batch := strings.Repeat(small, 20) // ~9 KB
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"+batch)
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, batch)
		br := bufio.NewReader(c)
		start := time.Now()
		for i := 0; i < 41; i++ {
			c.SetReadDeadline(time.Now().Add(4 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("run %d: response %d after %v: %v", run, i, time.Since(start).Round(time.Millisecond), err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				lp := (*p.e.loopList.Load())[0]
				onLoop(lp, func() {
					for s := lp.sessions.next; s != &lp.sessions; s = s.next {
						t.Logf("session st=%d client parked=%v resuming=%v pend=%d reqDone=%v up=%v", s.st, s.cl.parked, s.cl.resuming, len(s.cl.pend)-s.cl.poff, s.reqDone, s.up != nil)
						if s.up != nil {
							t.Logf("  up parked=%v resuming=%v pend=%d", s.up.parked, s.up.resuming, len(s.up.pend)-s.up.poff)
						}
					}
				})
				t.Fatalf("run %d: response %d body after %d bytes, %v: %v", run, i, n, time.Since(start).Round(time.Millisecond), err)
			}
		}
		c.Close()
	}
}

// An early response outruns the client while request body bytes still sit
// in gnet's outbound buffer for the backend: pace must not park the
// backend connection then (gnet's close would drop those bytes and the
// backend would get a body with a hole). Cutting the exchange short is
// acceptable; a corrupted body is not.
func TestBackendParkKeepsRequestBody(t *testing.T) {
	const bodyN = 8 << 20
	const respN = 8 << 20
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 4)
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 64<<10)
		if _, err := readHead(br); err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond) // body piles up in pace first
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", respN)
		c.Write(pattern(respN / 2)) // an early response, body not read yet
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		want := pattern(bodyN)
		got := make([]byte, bodyN)
		k, err := io.ReadFull(br, got)
		n := int64(k)
		for i := 0; i < k; i++ {
			if got[i] != want[i] {
				err = fmt.Errorf("body differs from byte %d on (%v)", i, err)
				break
			}
		}
		res <- result{n, err}
		c.Write(pattern(respN / 2))
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(10 * time.Second)
	})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", bodyN)
		c.Write(pattern(bodyN))
	}()
	time.Sleep(400 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(8 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		var n int64
		n, err = io.Copy(io.Discard, resp.Body)
		t.Logf("client got %d response body bytes, err %v", n, err)
	}
	select {
	case r := <-res:
		// Cut short (abort) is acceptable; bytes missing in the middle are not.
		t.Logf("backend got %d of %d request body bytes (%v)", r.n, bodyN, r.err)
		if r.err != nil && strings.Contains(r.err.Error(), "differs") {
			t.Fatalf("corrupted request body: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend never finished reading")
	}
}

// Request body bytes that arrive while the backend connection is parked
// are forwarded once it is unparked, even when the client sends nothing
// more.
func TestBodyTailAfterBackendUnpark(t *testing.T) {
	const bodyN = 1 << 20
	const tail = 1000
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 64<<10)
		if _, err := readHead(br); err != nil {
			return
		}
		got := make(chan int64, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(6 * time.Second))
			n, _ := io.CopyN(io.Discard, br, bodyN)
			got <- n
		}()
		time.Sleep(100 * time.Millisecond)
		const first = 4 << 20
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", first+20)
		c.Write(pattern(first))
		n := <-got
		fmt.Fprintf(c, "%20d", n) // the response ends with what the backend got
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(20 * time.Second)
	})
	c, lp := dialLoop(t, p)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", bodyN)
	c.Write(pattern(bodyN)[:bodyN-tail])
	if !waitUpParked(lp, 2*time.Second) {
		t.Skip("backend connection not parked: scenario not reached")
	}
	c.Write(pattern(bodyN)[bodyN-tail:])
	time.Sleep(100 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response cut after %d bytes: %v", len(all), err)
	}
	if last := strings.TrimSpace(string(all[len(all)-20:])); last != fmt.Sprint(bodyN) {
		t.Fatalf("backend got %s request body bytes, want %d", last, bodyN)
	}
}

// The backend closes without answering while the client is parked: the
// close is handled when the client comes back (a retry or 502), not after
// response_timeout.
func TestBackendEOFWhileClientParked(t *testing.T) {
	var n atomic.Int32
	be := headsBackend(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
		if n.Add(1) == 1 {
			return false // first request: close without answering
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(15 * time.Second)
	})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	small := fmt.Sprintf("GET /small HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", strings.Repeat("p", 400))
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+strings.Repeat(small, 12))
	start := time.Now()
	c.SetReadDeadline(start.Add(4 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("first response after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 502 {
		t.Fatalf("first response: status %d, want 200 (retried) or 502", resp.StatusCode)
	}
}

// While a partial head sits in the saved bytes, what the client adds behind
// it stays bounded by the head limit.
func TestHeadSplitAcrossParkIsBounded(t *testing.T) {
	p := startParkingProxy(t)
	c, lp := dialLoop(t, p)
	defer c.Close()
	fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	fmt.Fprintf(c, "GET /next HTTP/1.1\r\nHost: x\r\nX-Pad: %s", strings.Repeat("p", 6000))
	time.Sleep(600 * time.Millisecond)
	junk := []byte(strings.Repeat("p", 1<<20))
	go func() {
		for i := 0; i < 32; i++ {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	var held int
	onLoop(lp, func() {
		if s := lp.sessions.next; s != &lp.sessions {
			held = s.cl.buffered()
		}
	})
	if held > 1<<20 {
		t.Fatalf("pace holds %d bytes of one client's unparsed head (max_header_size 64KiB)", held)
	}
}

// A 504 decided while the client is parked for pipelined requests (the
// request itself is complete, so the connection stays open) reaches the
// client, and the pipelined requests behind it are then served.
func TestParkedPipelinedClientGetsErrorThenTheRest(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	addr := headsBackend(t, func(c net.Conn, _ *bufio.Reader, h string) bool {
		if strings.HasPrefix(h, "GET /hang") {
			<-hold
			return false
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		return true
	})
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(500 * time.Millisecond)
	})
	c := dialProxy(t, p)
	var b bytes.Buffer
	b.WriteString("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	n := 0
	for b.Len() < 16<<10 {
		fmt.Fprintf(&b, "GET /ok/%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", n, strings.Repeat("p", 200))
		n++
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no first response (parked %d): %v", p.e.met.Parked.Get(), err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 504 {
		t.Fatalf("first status %d, want 504", resp.StatusCode)
	}
	if p.e.met.Parked.Get() == 0 {
		t.Fatal("never parked")
	}
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined %d/%d: %v", i, n, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("pipelined %d: status %d", i, resp.StatusCode)
		}
	}
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// A parked client that reset its connection before pace decided on the
// 504 is closed, its slot and its backend connection given back, and no
// descriptor is left behind. When parking duplicated the descriptor and
// enrolled it again to send the 504, gnet's Enroll panicked on the reset
// socket and the session held its max_connections slot until
// idle_timeout; now the reset reaches the paused connection at once.
func TestParkedClientResetBeforeOwedResponse(t *testing.T) {
	addr, release := holdingBackend(t)
	p := startProxy(t, []string{addr}, func(o *Options) {
		o.Server.BufferLimit = 4096
		o.Server.Workers = 1
		o.Upstreams.ResponseTimeout = dur(700 * time.Millisecond)
	})
	before := openFDs()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	size := 16 << 20
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		chunk := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		for n := 0; n < size; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	<-wrote
	if p.e.met.Parked.Get() == 0 {
		t.Fatal("never parked")
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // RST while parked; the 504 comes ~700ms later
	deadline := time.Now().Add(3 * time.Second)
	for p.e.clients.Load() != 0 || p.e.uplinks.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("clients=%d uplinks=%d 3s after the client reset (the 504 was due after 0.7s)", p.e.clients.Load(), p.e.uplinks.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	release() // the backend closes its side of the held connection
	time.Sleep(200 * time.Millisecond)
	if n := openFDs(); n > before {
		t.Fatalf("%d descriptors open, %d before the client came", n, before)
	}
}

// A bad chunk line after the response started aborts the exchange inside
// the client's own callback, where the close is only queued; the bytes
// behind it, over buffer_limit, must not park the closing connection,
// which nothing would then ever close.
func TestAbortedClientIsNeverParked(t *testing.T) {
	b := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		// Answer at once, with a body that is not finished.
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	p := startProxy(t, []string{b}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 4096
		o.Upstreams.ResponseTimeout = dur(500 * time.Millisecond)
	})
	c := dialProxy(t, p)
	if _, err := c.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := make([]byte, 10)
	if _, err := resp.Body.Read(got); err != nil {
		t.Fatal(err)
	}
	// A bad chunk-size line, followed by far more than buffer_limit.
	if _, err := c.Write([]byte("zz\r\n" + strings.Repeat("x", 32<<10))); err != nil {
		t.Fatal(err)
	}
	// The exchange was aborted: the client connection must close (well
	// within the 0.5 s response timeout plus a sweep or two).
	c.SetReadDeadline(time.Now().Add(4 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := br.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("client connection still open 4s after its exchange was aborted (clients=%d uplinks=%d)", p.e.clients.Load(), p.e.uplinks.Load())
		}
		break
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.e.clients.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("clients=%d after the client connection closed", p.e.clients.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A backend connection parked for a slow client that the backend then
// resets mid close-delimited body: the client must see a reset, never a
// clean end that passes the cut body off as complete. With reads paused,
// epoll reports the reset without EPOLLIN, and gnet closed with io.EOF.
func TestParkedBackendResetIsNoCleanEnd(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		go func() {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			c.Write(make([]byte, 16<<20))
		}()
		time.Sleep(500 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0) // RST while pace has the connection parked
		c.Close()
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 64 << 10
	})
	c, lp := dialLoop(t, p)
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !waitUpParked(lp, 400*time.Millisecond) {
		t.Fatal("the backend connection was never parked: the test tests nothing")
	}
	time.Sleep(time.Second) // the reset lands while parked
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatalf("read %d of 16 MiB and a clean end: the backend's reset became a complete response", n)
	}
}

// waitUpParked reports whether the backend connection of lp's first
// session gets parked (with no unpark's work pending) within d.
func waitUpParked(lp *loop, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		parked := false
		onLoop(lp, func() {
			s := lp.sessions.next
			parked = s != &lp.sessions && s.up != nil && s.up.parked && !s.up.resuming
		})
		if parked {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// lingerClient dials p with a 4 KiB receive buffer, so that pace parks it
// quickly.
func lingerClient(t *testing.T, p *testProxy) net.Conn { return smallWindowDial(t, p.addr) }

// smallWindowDial dials addr with a 4 KiB receive buffer: the sender's
// queue fills after a few KiB the client has not read.
func smallWindowDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readAnswers reads responses from br and checks their body sizes.
func readAnswers(t *testing.T, br *bufio.Reader, sizes ...int) {
	t.Helper()
	for i, want := range sizes {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || int(n) != want {
			t.Fatalf("response %d: %d of %d body bytes, %v", i, n, want, err)
		}
	}
}

// A parked client whose last response ends the connection (it asked for
// Connection: close), with more of its pipelined requests still in the kernel
// where pace left them: pace must linger, reading them, not close with
// them unread, which resets the connection and loses the response's tail.
func TestParkedClientLingersOverUnreadInput(t *testing.T) {
	big := make([]byte, 100<<10)
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			h, err := readHead(br)
			if err != nil {
				return
			}
			if strings.Contains(h, "/slow") {
				time.Sleep(300 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n") // close-delimited, re-chunked for the client
			c.Write(big)
			return
		}
	})
	p := startProxy(t, []string{be}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 4096
	})
	c := lingerClient(t, p)
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "+strings.Repeat("p", 5000)+"\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // parked by now; the rest stays in the kernel
	go io.WriteString(c, strings.Repeat("GET /more HTTP/1.1\r\nHost: x\r\n\r\n", 1500))
	time.Sleep(time.Second)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	readAnswers(t, bufio.NewReader(c), 4, len(big))
}

// A parked client that half-closed after pipelining, answered with
// Connection: close: pace's lingering close must read its input to the
// FIN, not close with it unread (a reset that drops the response's tail).
func TestParkedHalfClosedClientLingers(t *testing.T) {
	big := make([]byte, 200<<10)
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "slow")
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		o.Server.Workers = 1
		o.Server.BufferLimit = 4096
	})
	c := lingerClient(t, p)
	defer c.Close()
	go func() {
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"+strings.Repeat("j", 100<<10))
		c.(*net.TCPConn).CloseWrite()
	}()
	time.Sleep(time.Second)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	readAnswers(t, bufio.NewReader(c), 4, len(big))
}
