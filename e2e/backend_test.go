package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// message is one request as the recording backend received it.
type message struct {
	Conn, N int    // backend connection number (from 1) and request number on it (from 1)
	Raw     []byte // exactly the bytes of this request, head and body
	Method  string
	Target  string
	Proto   string
	Header  http.Header
	Body    []byte
	Trailer http.Header
	Err     error // head parse error: pace sent something a strict parser rejects
	BodyErr error // body read error (connection closed mid-body)
	Mode    string
}

// backend is the raw-TCP recording backend. Requests to /mode/NAME/... make
// it misbehave (see respond); everything else gets 200 with a body that
// identifies the request: "req <conn>/<n> path=<target> len=<bodylen> sha=<8 hex>".
type backend struct {
	t    testing.TB
	Addr string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	nconn  int
	msgs   []*message
	closed bool
	wg     sync.WaitGroup
	delay  time.Duration // added before every default response
	// noRecord keeps only a count of messages (long soaks); checks that
	// look at messages see none.
	noRecord bool
	count    int
}

func startBackend(t testing.TB) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{t: t, Addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	b.serve(ln)
	t.Cleanup(b.Kill)
	return b
}

func (b *backend) serve(ln net.Listener) {
	b.mu.Lock()
	b.ln, b.closed = ln, false
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				c.Close()
				return
			}
			b.nconn++
			id := b.nconn
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.handle(id, c)
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
		}
	}()
}

// Kill closes the listener and every connection at once, like a crash.
func (b *backend) Kill() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.ln.Close()
	for c := range b.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Restart listens again on the same address.
func (b *backend) Restart() {
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", b.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Errorf("backend restart on %s: %v", b.Addr, err)
		return
	}
	b.serve(ln)
}

// Messages returns a snapshot of everything received so far.
func (b *backend) Messages() []*message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*message(nil), b.msgs...)
}

// WithMarker returns the messages whose raw bytes contain marker.
func (b *backend) WithMarker(marker string) []*message {
	var out []*message
	for _, m := range b.Messages() {
		if bytes.Contains(m.Raw, []byte(marker)) {
			out = append(out, m)
		}
	}
	return out
}

// OnConn returns the messages received on backend connection id.
func (b *backend) OnConn(id int) []*message {
	var out []*message
	for _, m := range b.Messages() {
		if m.Conn == id {
			out = append(out, m)
		}
	}
	return out
}

func (b *backend) record(m *message) {
	b.mu.Lock()
	b.count++
	if !b.noRecord || m.Err != nil {
		b.msgs = append(b.msgs, m)
	}
	b.mu.Unlock()
}

// Count is the number of requests received, recorded or not.
func (b *backend) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// recReader records every byte read from the connection.
type recReader struct {
	r   io.Reader
	all []byte
}

func (r *recReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.all = append(r.all, p[:n]...)
	return n, err
}

func (b *backend) handle(id int, c net.Conn) {
	rr := &recReader{r: c}
	br := bufio.NewReaderSize(rr, 64<<10)
	bw := bufio.NewWriter(c)
	start := 0
	for n := 1; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, io.EOF) && len(rr.all) == start {
				return // clean close between requests
			}
			if isClosedErr(err) && len(rr.all) == start {
				return
			}
			// Whatever is left is what pace sent; grab a little more.
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			io.Copy(io.Discard, br)
			b.record(&message{Conn: id, N: n, Raw: append([]byte(nil), rr.all[start:]...), Err: err})
			return
		}
		m := &message{Conn: id, N: n, Method: req.Method, Target: req.RequestURI, Proto: req.Proto, Header: req.Header}
		mode, arg := modeOf(req.URL.Path)
		m.Mode = mode
		if mode == "early" {
			// Answer before reading the body, then keep framing by
			// reading (and recording) the body afterwards.
			writeIdentity(bw, id, n, req.RequestURI, nil, "")
			bw.Flush()
		}
		m.Body, m.BodyErr = io.ReadAll(req.Body)
		m.Trailer = req.Trailer
		end := len(rr.all) - br.Buffered()
		m.Raw = append([]byte(nil), rr.all[start:end]...)
		rr.all = append(rr.all[:0], rr.all[end:]...) // keep only unconsumed bytes
		start = 0
		b.record(m)
		if m.BodyErr != nil {
			return
		}
		if mode == "early" {
			continue
		}
		if !b.respond(bw, c, m, mode, arg, req.Method) {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// modeOf splits "/mode/NAME/ARG..." into NAME and ARG.
func modeOf(path string) (mode, arg string) {
	rest, ok := strings.CutPrefix(path, "/mode/")
	if !ok {
		return "", ""
	}
	mode, arg, _ = strings.Cut(rest, "/")
	return mode, arg
}

func identityBody(conn, n int, target string, body []byte) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("req %d/%d path=%s len=%d sha=%s", conn, n, target, len(body), hex.EncodeToString(sum[:4]))
}

func writeIdentity(w *bufio.Writer, conn, n int, target string, body []byte, extra string) {
	s := identityBody(conn, n, target, body)
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(s), s)
}

// Misbehaviour modes, selected by the request path /mode/NAME/...; each
// documents what a correct proxy must make of it.
const (
	modeGarbageStatus = "garbage-status" // status line "HTTP/1.1 2OO OK": 502
	modeCLAndChunked  = "cl-and-chunked" // both framings (RFC 9112 6.3 p3): body "hello" or 502, no reuse
	modeTwoCL         = "two-cl"         // Content-Length 5 and 7 (RFC 9112 6.3 p5): 502, no reuse
	modeCloseMidBody  = "close-mid-body" // Content-Length 100, 10 bytes, close: client conn closed, never a complete-looking response
	modeTrailingBytes = "trailing-bytes" // a second response glued after the body: body "hello", no reuse
	modeHeadCL        = "head-cl"        // HEAD answered with Content-Length 20 and no body (valid): no body to the client
	modeHeadCLBody    = "head-cl-body"   // HEAD answered with Content-Length 20 and 20 body bytes: no body, no reuse
	mode204Body       = "204-body"       // 204 followed by body bytes (RFC 9112 6.3 p1): 204 without body, no reuse
	mode304Body       = "304-body"       // 304 followed by body bytes: 304 without body, no reuse
	modeMany1xx       = "many-1xx"       // 100, 102, 103 then 200: the final 200 reaches the client
	modeBigHead       = "big-head"       // a 70 KiB response head: 502, no reuse
	modeSleep         = "sleep"          // /mode/sleep/MS: wait MS milliseconds, then 200
	modeHang          = "hang"           // never answer
	modeBig           = "big"            // /mode/big/N: 200 with an N MiB body
)

// respond writes the response for m; it returns false when the backend
// must stop using the connection (it closed it or is hanging on it).
func (b *backend) respond(w *bufio.Writer, c net.Conn, m *message, mode, arg, method string) bool {
	id, n, target := m.Conn, m.N, m.Target
	switch mode {
	case modeGarbageStatus:
		w.WriteString("HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok")
	case modeCLAndChunked:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	case modeTwoCL:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello..")
	case modeCloseMidBody:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		w.Flush()
		time.Sleep(20 * time.Millisecond)
		return false
	case modeTrailingBytes:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
	case modeHeadCL:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
	case modeHeadCLBody:
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789")
	case mode204Body:
		w.WriteString("HTTP/1.1 204 No Content\r\n\r\nhello")
	case mode304Body:
		w.WriteString("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\nhello")
	case modeMany1xx:
		w.WriteString("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		writeIdentity(w, id, n, target, m.Body, "")
	case modeBigHead:
		w.WriteString("HTTP/1.1 200 OK\r\n")
		for i := 0; i < 70; i++ {
			fmt.Fprintf(w, "X-Big-%d: %s\r\n", i, strings.Repeat("b", 1024))
		}
		w.WriteString("Content-Length: 2\r\n\r\nok")
	case modeSleep:
		ms, _ := strconv.Atoi(arg)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		writeIdentity(w, id, n, target, m.Body, "")
	case modeBig:
		mib, _ := strconv.Atoi(arg)
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", mib<<20)
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for i := 0; i < mib*16; i++ {
			if _, err := w.Write(chunk); err != nil {
				return false
			}
		}
	case modeHang:
		io.Copy(io.Discard, c)
		return false
	default:
		if b.delay > 0 {
			time.Sleep(b.delay)
		}
		writeIdentity(w, id, n, target, m.Body, "")
	}
	_ = method
	return true
}

// checkMessage applies the rules every forwarded request must satisfy and
// returns the violations: strict parse, CRLF only, one clean framing header,
// HTTP/1.1, the X-Proxy/X-Forwarded-* fields, no hop-by-hop fields.
func checkMessage(m *message) []string {
	var bad []string
	if m.Err != nil {
		return []string{fmt.Sprintf("%v: %v", errBackendParse, m.Err)}
	}
	head := m.Raw
	if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
		head = head[:i+2]
	}
	for i, c := range head {
		if c == '\r' && (i+1 >= len(head) || head[i+1] != '\n') {
			bad = append(bad, "bare CR in head (RFC 9112 2.2)")
			break
		}
		if c == '\n' && (i == 0 || head[i-1] != '\r') {
			bad = append(bad, "bare LF in head (RFC 9112 2.2)")
			break
		}
	}
	if bytes.Contains(head, []byte("\r\n ")) || bytes.Contains(head, []byte("\r\n\t")) {
		bad = append(bad, "obs-fold in forwarded head (RFC 9112 5.2)")
	}
	if m.Proto != "HTTP/1.1" {
		bad = append(bad, "forwarded as "+m.Proto+", want HTTP/1.1")
	}
	cl, te := m.Header.Values("Content-Length"), m.Header.Values("Transfer-Encoding")
	switch {
	case len(cl) > 0 && len(te) > 0:
		bad = append(bad, fmt.Sprintf("both Content-Length %q and Transfer-Encoding %q (RFC 9112 6.1)", cl, te))
	case len(cl) > 1:
		bad = append(bad, fmt.Sprintf("Content-Length repeated %q", cl))
	case len(te) > 1 || (len(te) == 1 && te[0] != "chunked"):
		bad = append(bad, fmt.Sprintf("Transfer-Encoding %q, want exactly chunked", te))
	}
	if len(cl) == 1 && cl[0] != strconv.Itoa(len(m.Body)) {
		bad = append(bad, fmt.Sprintf("Content-Length %s but %d body bytes parsed", cl[0], len(m.Body)))
	}
	if len(m.Trailer) > 0 {
		bad = append(bad, fmt.Sprintf("trailer fields forwarded %v, want them dropped", m.Trailer))
	}
	if v := m.Header.Get("X-Proxy"); v != "pace" {
		bad = append(bad, fmt.Sprintf("X-Proxy = %q, want pace", v))
	}
	if v := m.Header.Values("X-Forwarded-For"); len(v) != 1 || !strings.HasSuffix(v[0], "127.0.0.1") {
		bad = append(bad, fmt.Sprintf("X-Forwarded-For = %q, want one field ending in 127.0.0.1", v))
	}
	if v := m.Header.Get("X-Forwarded-Proto"); v != "http" {
		bad = append(bad, fmt.Sprintf("X-Forwarded-Proto = %q, want http", v))
	}
	for _, h := range []string{"Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Proxy-Authorization"} {
		if v, ok := m.Header[h]; ok {
			bad = append(bad, fmt.Sprintf("hop-by-hop field %s: %q forwarded (RFC 9110 7.6.1)", h, v))
		}
	}
	for _, v := range m.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.ToLower(strings.TrimSpace(tok)); tok != "keep-alive" && tok != "" {
				bad = append(bad, fmt.Sprintf("Connection: %q forwarded", v))
			}
		}
	}
	return bad
}
