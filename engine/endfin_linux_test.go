package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The last response on a connection that closes after it reaches the
// client in one segment with the FIN (writeClientv's end, sendEnd), for
// proxied responses and for the answers pace makes itself. Counted with
// TCP_INFO on the client's socket: the segments it received without data
// are the SYN-ACK, pace's ACK of the request (sent at once at the start of
// a connection) and, when it comes on its own, the FIN: 3 when the FIN
// came alone, as it did before, 2 when it rode with the response.
func TestLastResponseCarriesTheFIN(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	b := newNamedBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "hello from b\n")
	})
	p := startProxy(t, []string{b.addr()}, func(o *Options) {
		on := true
		o.RateLimit.Enabled = &on
		o.RateLimit.MaxRequests = 3 // the 4th proxied request gets 429
		o.RateLimit.WindowSeconds = 60
	})
	// A response that ends while gnet still holds some of it for a slow
	// client (a 4 KiB receive buffer): the last bytes queue behind the
	// rest, and all of it arrives, in order, before the FIN.
	bc := lingerClient(t, p)
	defer bc.Close()
	bc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(bc, "GET /big HTTP/1.0\r\n\r\n")
	got, err := io.ReadAll(bc)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(got, []byte("\r\n\r\n"))
	if i < 0 || !bytes.Equal(got[i+4:], big) {
		t.Fatalf("%d-byte response: got %d bytes, body intact %v", len(big), len(got), i >= 0 && bytes.Equal(got[i+4:], big))
	}
	for _, tc := range []struct {
		name, req, status string
	}{
		{"proxied, HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 200 "},
		{"proxied, Connection: close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 "},
		{"metrics, Connection: close", "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 "},
		{"429, HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 429 "},
		{"400", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 400 "},
	} {
		c := dialProxy(t, p)
		if _, err := io.WriteString(c, tc.req); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c) // to the FIN
		if err != nil || !strings.HasPrefix(string(got), tc.status) {
			t.Fatalf("%s: read %.40q, %v; want %q...", tc.name, got, err, tc.status)
		}
		info := tcpInfo(t, c)
		if bare := info.Segs_in - info.Data_segs_in; bare > 2 {
			t.Errorf("%s: %d segments without data reached the client, want 2 (SYN-ACK, ACK): the FIN came on its own",
				tc.name, bare)
		}
	}
}

// A client that sends more after a Connection: close request, its bytes
// reaching pace's kernel after gnet's last read and before the close:
// closing a socket with unread input resets it and drops whatever is
// still queued to send. The response must have left by then, FIN and
// all, and reach the client before the reset; with the FIN only queued
// behind it (MSG_MORE) until the close, most of these clients got the
// reset alone.
func TestLastResponseSurvivesLateClientBytes(t *testing.T) {
	// The backend hands each request's connection to the test, which
	// answers it.
	asked := make(chan net.Conn)
	be := headsBackend(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
		select {
		case asked <- c:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	})
	p := startProxy(t, []string{be}, func(o *Options) { o.Server.Workers = 1 })
	const rounds = 100
	lost := 0
	for i := 0; i < rounds; i++ {
		c := dialProxy(t, p)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		var bc net.Conn
		select {
		case bc = <-asked:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the request did not reach the backend", i)
		}
		io.WriteString(bc, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
		c.Write([]byte("X")) // races pace's close of this connection
		got, err := io.ReadAll(c)
		if !strings.HasPrefix(string(got), "HTTP/1.1 200 ") || !strings.HasSuffix(string(got), "\r\n\r\nhello\n") {
			lost++
			t.Logf("round %d: read %q, %v", i, got, err)
		}
		c.Close()
	}
	if lost > 0 {
		t.Fatalf("%d of %d responses lost to the reset of a client that sent more", lost, rounds)
	}
}

func tcpInfo(t *testing.T, c net.Conn) *unix.TCPInfo {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	return info
}

// sendEnd shuts the writing side only when the kernel took everything: a
// response it took part of still has bytes for gnet to write.
func TestSendEndShutsOnlyWhenAllWent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var lp loop
	for _, tc := range []struct {
		name  string
		size  int
		whole bool // sendEnd takes all of it
	}{
		{"partial", 8 << 20, false},
		{"whole", 4, true},
	} {
		cc := smallWindowDial(t, ln.Addr().String())
		defer cc.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		rc, err := sc.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		out := bytes.Repeat([]byte("x"), tc.size)
		var n int
		var state uint8
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
			n = lp.sendEnd(int(fd), out[:tc.size/2], out[tc.size/2:])
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				state = info.State
			}
		})
		if (n == tc.size) != tc.whole || n <= 0 {
			t.Fatalf("%s: sendEnd wrote %d of %d bytes", tc.name, n, tc.size)
		}
		if open := state == tcpEstablished; open == tc.whole {
			t.Errorf("%s: after sendEnd wrote %d of %d bytes the socket is in TCP state %d, want the writing side shut only when all went",
				tc.name, n, tc.size, state)
		}
	}
}

const tcpEstablished = 1 // TCP_ESTABLISHED, include/net/tcp_states.h

// A response is counted before its last bytes leave: a client that has
// read a closing response to its end (the FIN now comes with the last
// bytes, before pace's close) and reads the metrics at once finds it
// counted.
func TestResponseCountedBeforeItsEnd(t *testing.T) {
	b := newNamedBackend(t, "b", nil)
	p := startProxy(t, []string{b.addr()}, nil)
	var buf bytes.Buffer
	for i := 1; i <= 200; i++ {
		c := dialProxy(t, p)
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
		c.Close()
		buf.Reset()
		p.e.met.WritePrometheus(&buf)
		want := fmt.Sprintf("http_requests_duration_seconds_count{method=\"GET\",status=\"200\"} %d\n", i)
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Fatalf("response %d read to its end, but the metrics lack %q", i, strings.TrimSpace(want))
		}
	}
}
