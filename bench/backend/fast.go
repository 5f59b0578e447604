package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/pace-proxy/pace/codec"
)

// fastServer is the -fast mode: every request gets the GET / answer,
// served from gnet event loops with pace's own codec, so that the origin
// costs as little CPU as possible and the load harness measures the
// proxies, not net/http. It keeps connections alive, answers pipelined
// requests in order with one write per batch, skips request bodies
// (Content-Length or chunked) and answers a malformed head with 400 and a
// close.
//
// Its methods are gnet callbacks and run on the connection's event loop,
// except Stop, which any goroutine may call.
type fastServer struct {
	gnet.BuiltinEventEngine
	name  string
	hello []byte                 // "hello from <name>\n"
	head  []byte                 // status line and fixed fields, up to the Date field
	date  atomic.Pointer[[]byte] // "Date: <IMF-fixdate>\r\n", refreshed every second
	addr  chan string            // receives the bound address once the engine is up
	eng   gnet.Engine
}

// fastConn is one connection's state. Loop only.
type fastConn struct {
	req    codec.Request
	body   codec.Body
	inBody bool   // a request body is being skipped
	out    []byte // responses of the current batch
	resp   []byte // scratch for one response body
}

func newFastServer(name string) *fastServer {
	s := &fastServer{
		name:  name,
		hello: []byte("hello from " + name + "\n"),
		head: []byte("HTTP/1.1 200 OK\r\nX-Backend-Name: " + name +
			"\r\nContent-Type: text/plain; charset=utf-8\r\n"),
		addr: make(chan string, 1),
	}
	s.setDate(time.Now())
	return s
}

func (s *fastServer) setDate(t time.Time) {
	b := []byte("Date: " + t.UTC().Format(http.TimeFormat) + "\r\n")
	s.date.Store(&b)
}

// run serves on listen ("host:port"; port 0 picks one) with loops event
// loops until Stop. It blocks. Any goroutine.
func (s *fastServer) run(listen string, loops int) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				s.setDate(now)
			case <-stop:
				return
			}
		}
	}()
	return gnet.Run(s, "tcp://"+listen,
		gnet.WithMulticore(loops > 1),
		gnet.WithNumEventLoop(loops),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(quietLogger{}))
}

// Stop stops a running server. Any goroutine.
func (s *fastServer) Stop(ctx context.Context) error { return s.eng.Stop(ctx) }

// OnBoot records the engine and reports the bound address.
func (s *fastServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	addr := "?"
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if in4, ok := sa.(*unix.SockaddrInet4); ok {
				addr = fmt.Sprintf("%d.%d.%d.%d:%d", in4.Addr[0], in4.Addr[1], in4.Addr[2], in4.Addr[3], in4.Port)
			}
		}
		unix.Close(fd)
	}
	s.addr <- addr
	return gnet.None
}

func (s *fastServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&fastConn{out: make([]byte, 0, 512)})
	return nil, gnet.None
}

// OnTraffic answers every complete request in the input. Loop.
func (s *fastServer) OnTraffic(c gnet.Conn) gnet.Action {
	fc := c.Context().(*fastConn)
	in, _ := c.Peek(-1)
	fc.out = fc.out[:0]
	used, act := s.serve(fc, in)
	if used > 0 { // Discard(0) would drop everything
		c.Discard(used)
	}
	if len(fc.out) > 0 {
		c.Write(fc.out)
	}
	return act
}

// serve consumes requests from in, appending their responses to fc.out. It
// returns the bytes used (an incomplete head is left for the next call)
// and gnet.Close when the connection must end after the write.
func (s *fastServer) serve(fc *fastConn, in []byte) (int, gnet.Action) {
	used := 0
	for used < len(in) {
		if fc.inBody {
			_, n, done, err := fc.body.Step(nil, in[used:])
			if err != nil {
				fc.out = append(fc.out, fastBadRequest...)
				return len(in), gnet.Close
			}
			used += n
			if !done {
				return used, gnet.None
			}
			fc.inBody = false
			continue
		}
		n, err := fc.req.Parse(in[used:], nil)
		if errors.Is(err, codec.ErrNeedMore) {
			return used, gnet.None
		}
		if err != nil {
			fc.out = append(fc.out, fastBadRequest...)
			return len(in), gnet.Close
		}
		used += n
		fc.resp = s.appendBody(fc.resp[:0], &fc.req)
		fc.out = s.appendHead(fc.out, &fc.req, len(fc.resp))
		fc.out = append(fc.out, fc.resp...)
		if !fc.req.KeepAlive {
			return len(in), gnet.Close
		}
		if fc.req.Body.Kind != codec.BodyNone {
			fc.body.Reset(fc.req.Body, codec.ModeForward)
			fc.inBody = true
		}
	}
	return used, gnet.None
}

var fastBadRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

// appendHead appends the GET / answer's status line and fields, the
// same as the net/http handler's root sends, for a body of n bytes.
func (s *fastServer) appendHead(dst []byte, r *codec.Request, n int) []byte {
	dst = append(dst, s.head...)
	dst = append(dst, *s.date.Load()...)
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	switch {
	case !r.KeepAlive:
		dst = append(dst, "\r\nConnection: close"...)
	case r.Minor == 0:
		dst = append(dst, "\r\nConnection: keep-alive"...)
	}
	return append(dst, "\r\n\r\n"...)
}

// appendBody appends the three-line GET / body, like appendHello.
func (s *fastServer) appendBody(dst []byte, r *codec.Request) []byte {
	dst = append(dst, s.hello...)
	dst = append(dst, "x-proxy: "...)
	dst = appendValues(dst, r, "X-Proxy")
	dst = append(dst, "\nx-forwarded-for: "...)
	dst = appendValues(dst, r, "X-Forwarded-For")
	return append(dst, '\n')
}

// appendValues appends every value of field name joined by ", ", or "-"
// when there is none, like appendJoined.
func appendValues(dst []byte, r *codec.Request, name string) []byte {
	v := r.Value(name, 0)
	if v == nil {
		return append(dst, '-')
	}
	dst = append(dst, v...)
	for i := 1; ; i++ {
		v = r.Value(name, i)
		if v == nil {
			return dst
		}
		dst = append(dst, ", "...)
		dst = append(dst, v...)
	}
}

// quietLogger drops gnet's log lines.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}
