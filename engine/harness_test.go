package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pace-proxy/pace/config"
	"github.com/pace-proxy/pace/upstream"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

type testProxy struct {
	e       *Engine
	addr    string
	done    chan error
	stopped sync.Once
}

// startProxy runs an engine in this process in front of backends; tweak
// may edit the options first.
func startProxy(t testing.TB, backends []string, tweak func(o *Options)) *testProxy {
	t.Helper()
	off := false
	o := Options{
		Server:    Config{Listen: freeAddr(t), Workers: 2},
		Upstreams: upstream.Config{Backends: backends},
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	o.RateLimit.Enabled = &off
	if testing.Verbose() {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{e: e, addr: o.Server.Listen, done: make(chan error, 1)}
	go func() { p.done <- e.Run() }()
	select {
	case <-e.Ready():
	case err := <-p.done:
		t.Fatalf("engine did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("engine did not start in 5s")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *testProxy) stop(t testing.TB) {
	p.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.e.Shutdown(ctx)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("engine did not stop")
		}
	})
}

// waitStopped is for tests that call Shutdown themselves.
func (p *testProxy) waitStopped(t testing.TB) {
	p.stopped.Do(func() {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after Shutdown")
		}
	})
}

func (p *testProxy) url(path string) string { return "http://" + p.addr + path }

// namedBackend is an httptest server that answers with its name and the
// proxy headers it received, and counts its connections.
type namedBackend struct {
	*httptest.Server
	name  string
	conns atomic.Int64
	reqs  atomic.Int64
}

func newNamedBackend(t testing.TB, name string, h http.HandlerFunc) *namedBackend {
	b := &namedBackend{name: name}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.reqs.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s\nx-proxy: %s\nx-forwarded-for: %s\nx-forwarded-proto: %s\nx-foo: %s\n",
			name, r.Header.Get("X-Proxy"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Foo"))
	}))
	b.Server.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *namedBackend) addr() string { return b.Listener.Addr().String() }

// rawBackend accepts connections and hands each to serve.
func rawBackend(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// headsBackend is a raw backend that reads the request heads on each
// connection one after another and calls answer with each: answer writes
// what it wants on c (reading any body from br), and returns false to be
// done with the connection.
func headsBackend(t testing.TB, answer func(c net.Conn, br *bufio.Reader, head string) bool) string {
	return rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			h, err := readHead(br)
			if err != nil || !answer(c, br, h) {
				return
			}
		}
	})
}

// readHead reads one request head from br (for raw backends).
func readHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		sb.WriteString(line)
		if line == "\r\n" {
			return sb.String(), nil
		}
	}
}

func client() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
}

func dur(d time.Duration) config.Duration { return config.Duration(d) }

func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp, string(b)
}

// heldListener is a loopback listener whose accept queue is full, so that
// SYNs to it are dropped (dials hang) until release, after which it serves
// h and the hanging dials complete on their next SYN retransmission.
func heldListener(t testing.TB, h http.HandlerFunc) (addr string, release func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr = fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel completes connections beyond the accept queue")
	}
	f := os.NewFile(uintptr(fd), "held")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return addr, func() { go http.Serve(ln, h) }
}

// blackhole returns a loopback address whose SYNs are dropped, like a
// backend host that is down: a listener with a full accept queue that
// never accepts. Dials to it wait until their timeout.
func blackhole(t testing.TB) string {
	addr, _ := heldListener(t, nil)
	return addr
}

// rawStatus sends one GET on a new connection to addr and returns the
// response's status.
func rawStatus(addr string) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// dialProxy opens a client connection to p, closed when the test ends,
// with a 10 s deadline for everything on it.
func dialProxy(t testing.TB, p *testProxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// sendRaw writes req (raw bytes, from a goroutine, so that a request pace
// rejects half-read cannot block the test) on a new connection to p and
// reads the response head; the body is left to read from resp.Body.
func sendRaw(t testing.TB, p *testProxy, req string) *http.Response {
	t.Helper()
	conn := dialProxy(t, p)
	go conn.Write([]byte(req))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("response to %.60q: %v", req, err)
	}
	return resp
}

// holdingBackend accepts connections, reads one request head on each and
// then neither reads nor answers until release (or the test's end) closes
// them. release may be called more than once.
func holdingBackend(t testing.TB) (addr string, release func()) {
	hold := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	addr = rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		<-hold
	})
	return addr, release
}

// namedStatus is the outcome of sendNamed.
type namedStatus struct {
	name   string
	status int
	err    error
}

// sendNamed is rawStatus for a client the test tells apart by name.
func sendNamed(p *testProxy, name string) namedStatus {
	st, err := rawStatus(p.addr)
	return namedStatus{name, st, err}
}
