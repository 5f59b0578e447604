package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/pace-proxy/pace/codec"
	"github.com/pace-proxy/pace/metrics"
	"github.com/pace-proxy/pace/upstream"
)

// upconn is one keep-alive connection to a backend, owned by one loop.
// While it serves a request, s is that request's session; while idle it
// sits in the loop's pool. Loop only.
type upconn struct {
	link
	lp     *loop
	be     *upstream.Backend
	s      *session
	gen    uint32 // the session attempt this connection was dialed for
	idle   bool
	idleAt int64
	reused bool // completed an exchange, or was taken from the idle pool
	dead   bool // never to be used again
	eof    bool // the backend closed; pend may still hold its last bytes
	reset  bool // ... and not with a clean FIN: a reset or an I/O error
	// full says the last read filled gnet's read buffer: the socket may
	// hold more, which finish must look for before reusing (see unread).
	full bool
	// pickedUp says be was up when the request picked it (not the
	// fallback when every backend is down); dial skips it if it went
	// down meanwhile.
	pickedUp bool
}

// dialers is the number of goroutines that dial backends, shared out
// between the backends (at least minDialers each). A bounded pool keeps a
// burst of new clients (10,000 at once) from starting as many goroutines,
// whose stacks would stay in pace's memory long after. Each backend has
// its own queue and workers, so dials to a backend that drops SYNs (each
// one taking connect_timeout) never hold up dials to the others.
const (
	dialers    = 256
	minDialers = 16
	dialQueue  = 1 << 16 // queued dials, all backends together
)

// testDialers, when set by a test before New, is the number of dial
// workers per backend.
var testDialers int

// startDialers starts the dial pools. Any.
func (e *Engine) startDialers() {
	nb := len(e.bal.Backends)
	workers := max(dialers/nb, minDialers)
	if testDialers > 0 {
		workers = testDialers
	}
	e.dialq = make([]chan *upconn, nb)
	for i := range e.dialq {
		q := make(chan *upconn, max(dialQueue/nb, 4096))
		e.dialq[i] = q
		for j := 0; j < workers; j++ {
			go func() {
				for up := range q {
					e.dial(up)
				}
			}()
		}
	}
}

// queueDial hands up to its backend's dial pool without blocking the
// loop; if the queue is full it dials on a goroutine of its own. Either
// way the goroutine that dials is made runnable on this loop's P, and
// HandOff lets it run before the loop blocks (see netpoll.HandOff). Loop.
func (e *Engine) queueDial(up *upconn) {
	select {
	case e.dialq[up.be.Index] <- up:
	default:
		go e.dial(up)
	}
	netpoll.HandOff()
}

// dial connects to up.be off the loop and enrolls the connection into
// up's loop, where OnOpen calls opened. A backend marked down since the
// request picked it is not dialed: the dials queued behind the ones that
// marked it down would each wait out connect_timeout for nothing. Blocks:
// never on a loop.
func (e *Engine) dial(up *upconn) {
	err := e.connectUp(up)
	e.transit.Add(-1) // connectUp closed the original descriptor
	if err != nil {
		up.lp.exec(func() { up.dialFailed(err) })
	}
}

// connectUp makes up's connection and enrolls it; see dial. Blocks.
func (e *Engine) connectUp(up *upconn) error {
	if up.pickedUp && up.be.Down() {
		return errWentDown
	}
	e.met.UpstreamDials.Inc()
	nc, err := e.bal.Dial(context.Background(), up.be)
	if outOfFDs(err) {
		e.logf(levelWarn, "no descriptor for a backend connection", "backend", up.be.Addr, "err", err)
		return errNoFDs
	}
	if err != nil {
		// Counted here, before this worker takes the next dial, so
		// that one already sees the backend down.
		e.met.UpstreamError(up.be.Index, metrics.ErrConnect)
		e.bal.Failure(up.be, nanotime())
		e.logf(levelWarn, "backend connect failed", "backend", up.be.Addr, "err", err)
		return err
	}
	ch, err := up.lp.el.Enroll(gnet.NewContext(context.Background(), up), nc)
	if err == nil {
		err = enrolled(ch)
	}
	// gnet registered a duplicate, or failed: either way the original
	// goes now (gnet closes it too, a moment later; a second Close is
	// harmless), before dial gives its budget back.
	_ = nc.Close()
	if outOfFDs(err) {
		err = errNoFDs
	}
	if err != nil {
		e.logf(levelWarn, "enrolling a backend connection failed", "backend", up.be.Addr, "err", err)
	}
	return err
}

// outOfFDs reports an error that means pace itself has no descriptor left.
func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// dialFailed runs on the loop when a dial or enroll failed.
func (up *upconn) dialFailed(err error) {
	e := up.lp.e
	e.uplinks.Add(-1)
	skipped := err == errWentDown
	if skipped {
		e.logf(levelDebug, "dial skipped", "backend", up.be.Addr, "err", err)
	}
	s := up.s
	up.s = nil
	up.dead = true
	if s == nil || s.dead || s.gen != up.gen || s.st != stConnecting {
		return
	}
	if skipped {
		// Nothing was tried: the backend is neither an attempt nor
		// excluded. Pick prefers the others, and falls back on it only
		// when all are down, as for any request.
		s.attempts--
		s.tried &^= 1 << uint(up.be.Index)
	}
	if err == errNoFDs {
		// Not the backend's fault, so it is not excluded; but the
		// attempt counts, so that a shortage that lasts ends in 503
		// instead of a redial on every sweep. Until then the request
		// waits like one that found the budget spent: a busy
		// connection finishing, or the sweep's dial, serves it.
		s.tried &^= 1 << uint(up.be.Index)
		if s.attempts <= max(e.retries, 1) {
			s.enqueue(false)
			return
		}
		s.fail(503, "Service Unavailable", "503 Service Unavailable: pace is out of file descriptors\n")
		return
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		s.retryOrFail(false, false, 504, "Gateway Timeout", "504 Gateway Timeout: no connection to the backend in time\n")
		return
	}
	if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) {
		s.retryOrFail(false, false, 502, "Bad Gateway", "502 Bad Gateway: the backend's name did not resolve\n")
		return
	}
	if skipped {
		s.retryOrFailCounted(false, false, false, 502, "Bad Gateway", "502 Bad Gateway: no backend could take the request\n")
		return
	}
	s.retryOrFail(false, false, 502, "Bad Gateway", "502 Bad Gateway: the backend refused the connection\n")
}

// enrolled waits for the result of an Enroll. A channel closed with no
// result means gnet's worker panicked (it recovers and closes it): that
// is a failure too, or the connection would be waited for forever. Blocks.
func enrolled(ch <-chan gnet.RegisteredResult) error {
	r, ok := <-ch
	if !ok {
		return errEnrollLost
	}
	return r.Err
}

// opened runs in OnOpen for a dialed connection. Loop.
func (up *upconn) opened(c gnet.Conn) {
	up.c = c
	s := up.s
	if s != nil && !s.dead && s.gen == up.gen && s.st == stConnecting {
		s.attach(up)
		return
	}
	up.s = nil
	up.lp.putIdle(up) // the session moved on; keep the fresh connection
}

// onData handles readable backend bytes. Loop (OnTraffic).
func (up *upconn) onData(c gnet.Conn) gnet.Action {
	if up.idle || up.s == nil || up.dead {
		// Bytes on an idle connection answer nothing: never reuse it.
		if up.idle {
			up.lp.dropIdle(up)
		}
		up.dead = true
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	up.full = c.InboundBuffered() >= readBufferCap
	return up.s.pumpResponse(true)
}

// unread reports whether the backend's socket holds bytes (or its FIN)
// that gnet has not read yet. Called only when the last read filled the
// read buffer, so that a response ending exactly at a read's end is not
// taken for a clean, complete exchange: what follows it would become the
// next request's response. A read that came back short had drained the
// socket. nginx peeks the same way before keeping a connection. Loop.
func (up *upconn) unread() bool {
	n, _, err := unix.Recvfrom(up.c.Fd(), up.lp.peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err != unix.EAGAIN || n > 0
}

// closed runs when gnet closed the backend connection; err is gnet's
// reason (io.EOF for the backend's FIN, nil when pace closed it). Loop
// (OnClose).
func (up *upconn) closed(c gnet.Conn, err error) {
	e := up.lp.e
	e.uplinks.Add(-1)
	if up.idle {
		up.lp.dropIdle(up)
	}
	s := up.s
	if s == nil || up.dead {
		up.dead = true
		up.c = nil
		return
	}
	// Keep what was read but not yet used: the last bytes of a response
	// that ends at close, or that waits for a parked client.
	if c.InboundBuffered() > 0 {
		up.save(c)
	}
	up.c = nil
	up.eof = true
	up.reset = err != nil && !errors.Is(err, io.EOF)
	s.pumpResponse(false)
}

// kill makes sure up is never used again and closes it. Loop.
func (up *upconn) kill() {
	up.dead = true
	up.s = nil
	if up.c != nil {
		up.lp.closeConn(up.c)
	}
}

// discard closes an idle connection (pool full, expired, draining). Loop.
func (up *upconn) discard() {
	up.idle = false
	up.kill()
}

// write queues b for the backend. gnet closes a connection whose write
// fails from inside Write (running closed), so up may be gone when it
// returns; the result says whether it is still usable. Loop.
func (up *upconn) write(b []byte) bool {
	if up.c == nil || up.dead {
		return false
	}
	_, _ = up.c.Write(b)
	return up.c != nil && !up.dead
}

// poll implements watcher: a parked upstream connection is unparked once
// its client drained below the low-water mark.
func (up *upconn) poll(now int64) bool {
	s := up.s
	if up.dead || s == nil || s.dead || s.up != up {
		if up.parked && !up.dead {
			up.kill() // its exchange ended while it waited: never reused
		}
		return false
	}
	if !up.parked {
		return false
	}
	if s.cl.c == nil || s.cl.c.OutboundBuffered() <= up.lp.e.lowWater {
		up.unpark(up.lp, up.resumed)
		return false
	}
	return true
}

// resumed serves, once up is read again after parking, what it had read
// already (the socket's newer bytes wake its callback by themselves).
// Loop.
func (up *upconn) resumed() {
	s := up.s
	if up.dead || s == nil || s.dead || s.up != up {
		return
	}
	s.pumpResponse(false)
	if s.up == up && !s.dead && !s.reqDone {
		s.process() // body bytes that came while up was parked
	}
}

// pumpResponse moves response bytes from s.up to the client. inCb says it
// runs in s.up's own OnTraffic, the only place where s.up may be parked;
// the returned action is for that callback. Loop.
func (s *session) pumpResponse(inCb bool) gnet.Action {
	up := s.up
	e := s.lp.e
	for up != nil && s.up == up && !s.dead {
		if s.cl.c == nil {
			return gnet.None // closed: closed() ends the exchange
		}
		if inCb && s.stallResp && s.cl.c.OutboundBuffered() > e.bufLimit {
			s.holdUp(up) // up could not be parked last time
			return gnet.None
		}
		if s.dl == dlSend && s.cl.c.OutboundBuffered() <= e.bufLimit {
			s.setDeadline(dlResponse, e.respTO) // the client caught up: wait on the backend again
		}
		in := up.input()
		if len(in) == 0 {
			if s.headQueued {
				s.headQueued = false
				if !s.flushHead(nil, false) || s.up != up {
					return gnet.None
				}
			}
			if up.eof {
				s.upstreamEOF()
			}
			return gnet.None
		}
		if !s.headDone {
			n, err := s.resp.Parse(in, &e.limits, s.isHead)
			s.respStarted = true
			if err == codec.ErrNeedMore {
				if up.eof {
					s.upstreamEOF() // a head cut short
				}
				return gnet.None
			}
			if err != nil {
				s.badResponse(err)
				return gnet.None
			}
			if s.resp.Status < 200 {
				if s.resp.Status == 101 {
					s.badResponse(errUnaskedUpgrade)
					return gnet.None
				}
				if s.minor >= 1 {
					h := codec.AppendResponseHead(s.lp.head[:0], &s.resp, &interimOpts)
					s.lp.head = h[:0]
					if !s.writeClient(h) {
						return gnet.None
					}
				}
				up.consume(n)
				s.setDeadline(dlResponse, e.respTO)
				// Interim heads are output like the body: a backend
				// sending them without end to a client that does not
				// read must not fill pace's memory.
				if s.cl.c.OutboundBuffered() > e.bufLimit {
					s.pauseForClient(up)
					return gnet.None
				}
				continue
			}
			s.writeResponseHead()
			up.consume(n)
			s.headDone = true
			s.headQueued = true
			if s.respBody.Done() {
				s.headQueued = false
				s.record() // before the response is out: see below
				if !s.flushHead(nil, s.closing()) || s.up != up {
					return gnet.None
				}
				s.finish()
				return gnet.None
			}
			continue
		}
		out, n, done, err := s.respBody.Step(s.lp.scratch[:0], in)
		if err != nil {
			s.badResponse(err)
			return gnet.None
		}
		w := out
		if s.respMode == codec.ModeForward {
			w = in[:n]
		}
		s.bytesOut += int64(len(w))
		end := done && s.closing() // finish, just below, closes
		if done {
			// Counted before the last bytes go, as local answers are:
			// a client that has its whole response (with a closing
			// connection, the FIN too) and scrapes /metrics at once,
			// through another loop, finds it counted.
			s.record()
		}
		if s.headQueued {
			s.headQueued = false
			if !s.flushHead(w, end) || s.up != up {
				return gnet.None
			}
		} else if len(w) > 0 && (!s.writeClientv(w, nil, end) || s.up != up) {
			return gnet.None
		}
		up.consume(n)
		if done {
			s.finish()
			return gnet.None
		}
		if n == 0 {
			return gnet.None
		}
		s.setDeadline(dlResponse, e.respTO)
		if s.cl.c.OutboundBuffered() > e.bufLimit {
			s.pauseForClient(up)
			return gnet.None
		}
	}
	return gnet.None
}

// pauseForClient stops forwarding the response from up until the client,
// over buffer_limit, drains. Loop.
func (s *session) pauseForClient(up *upconn) {
	// From here the response waits for the client: time it by
	// send_timeout, not the backend's response_timeout.
	s.awaitClient()
	if up.c != nil {
		if s.holdUp(up) || s.up != up {
			return
		}
	}
	// Parking failed: nothing would wake this response up again, so poll.
	if !s.stallResp {
		s.stallResp = true
		s.watch()
	}
}

// holdUp stops reading s.up while the client cannot take more: it parks
// up, whose watch entry unparks it once the client drained. If the poller
// refuses, the response stays in up's input, and past a bound the
// exchange is aborted. It reports whether up is parked. Loop.
func (s *session) holdUp(up *upconn) bool {
	e := s.lp.e
	if up.parked {
		return true
	}
	if up.park() {
		e.met.Parked.Inc()
		s.lp.addWatch(up)
		return true
	}
	if up.buffered() > e.holdMax {
		e.logf(levelInfo, "closing exchange: backend and client both not reading", "backend", s.be.Addr, "client", s.ip)
		s.abort()
	}
	return false
}

// writeResponseHead sends the client the response head for s.resp with
// X-Backend and the RateLimit fields, and sets up the body framer. Loop.
func (s *session) writeResponseHead() bool {
	e := s.lp.e
	rb := s.resp.Body
	out := rb
	s.respMode = codec.ModeForward
	switch rb.Kind {
	case codec.BodyNone:
		// HEAD and 304 keep the Content-Length that describes the
		// representation (RFC 9110 sections 8.6 and 15.4.5).
		if v := s.resp.Get("Content-Length"); v != nil && s.resp.Status != 204 {
			if n, ok := codec.ParseContentLength(v); ok {
				out = codec.Framing{Kind: codec.BodyLength, Length: n}
			}
		}
	case codec.BodyChunked:
		if s.minor >= 1 {
			s.respMode = codec.ModeRechunk
		} else {
			out = codec.Framing{Kind: codec.BodyClose}
			s.respMode = codec.ModeDechunk
			s.closeAfter = true
		}
	case codec.BodyClose:
		if s.minor >= 1 {
			// Re-chunked, as nginx does: the backend's close ends the
			// body, and the last chunk tells the client so; its
			// connection goes on (RFC 9112 section 6.3).
			out = codec.Framing{Kind: codec.BodyChunked}
			s.respMode = codec.ModeRechunk
		} else {
			s.closeAfter = true
		}
	}
	if !s.reqDone {
		s.closeAfter, s.unread = true, true
	}
	if e.draining.Load() {
		s.closeAfter = true
	}
	s.status = s.resp.Status
	s.respBody.Reset(rb, s.respMode)
	opts := codec.HeadOptions{
		Framing:   out,
		Close:     s.closeAfter,
		KeepAlive: s.minor == 0 && !s.closeAfter,
		Drop:      dropResp,
		Extra:     e.xbackend[s.be.Index],
	}
	h := codec.AppendResponseHead(s.lp.head[:0], &s.resp, &opts)
	if s.limited {
		h = e.lim.AppendHeaders(h[:len(h)-2], s.decision)
		h = append(h, '\r', '\n')
	}
	s.lp.head = h
	return true
}

// flushHead writes the response head left in s.lp.head, together with
// the first body bytes when there are some: one writev instead of two
// writes. end is writeClientv's. Loop.
func (s *session) flushHead(body []byte, end bool) bool {
	h := s.lp.head
	s.lp.head = h[:0]
	return s.writeClientv(h, body, end)
}

// finish completes an exchange whose response was fully forwarded. Loop.
func (s *session) finish() {
	e := s.lp.e
	up := s.up
	s.up = nil
	s.record()
	e.met.UpstreamRequests[s.be.Index].Inc()
	e.bal.Success(s.be)
	up.s = nil
	if up.c != nil && !up.eof && !up.dead && s.resp.KeepAlive && s.reqDone &&
		up.buffered() == 0 && up.c.OutboundBuffered() == 0 && !(up.full && up.unread()) &&
		(!up.parked || up.c.ResumeRead() == nil) {
		up.parked = false // read again: an idle connection must see the backend close
		up.reused = true
		s.lp.putIdle(up)
	} else {
		up.kill()
	}
	s.done()
	s.process()
}

// upstreamEOF handles the backend closing with nothing left to read. Loop.
func (s *session) upstreamEOF() {
	e := s.lp.e
	up := s.up
	switch {
	case !s.headDone:
		// No final response head: nothing of the response has reached
		// the client (an interim 1xx may have, and may come again), so
		// the request may go to another backend (retryOrFail's rules).
		s.up = nil
		up.kill()
		// The keep-alive race earns its free retry only for a request
		// that can take it. For one that cannot (a POST, a body no
		// longer held, a second stale connection) the close is a
		// failure like any other: counted against the backend, as
		// nginx counts errors on cached connections (a backend that
		// closes every POST is not the race), and retried elsewhere
		// where retryOrFail's rules allow.
		if stale := up.reused && !s.respStarted && !s.staleRetried && s.replayOK && s.idempotent(); stale {
			// The keep-alive race: the backend closed an idle
			// connection as the request went out. Not its failure.
			e.met.UpstreamError(s.be.Index, metrics.ErrStale)
			e.logf(levelDebug, "pooled backend connection closed before answering", "backend", s.be.Addr)
			s.retryOrFail(true, true, 502, "Bad Gateway", "502 Bad Gateway: the backend closed the connection\n")
			return
		}
		// nginx's "upstream prematurely closed connection", an error
		// that counts toward max_fails: here toward fail_threshold.
		e.met.UpstreamError(s.be.Index, metrics.ErrClosed)
		e.bal.Failure(s.be, nanotime())
		e.logf(levelWarn, "backend closed the connection before answering", "backend", s.be.Addr, "client", s.ip, "reset", up.reset)
		s.retryOrFail(true, false, 502, "Bad Gateway", "502 Bad Gateway: the backend closed the connection\n")
	case s.respBody.Remaining() < 0 && s.resp.Body.Kind == codec.BodyClose && !up.reset:
		// A close-delimited body ends here; re-chunked, its last chunk
		// goes now (pumpResponse has written a head waiting for body
		// bytes before it calls this).
		end, _ := s.respBody.Finish(s.lp.scratch[:0])
		s.bytesOut += int64(len(end))
		if (len(end) == 0 || s.writeClient(end)) && s.up == up {
			s.finish()
		}
	case up.reset:
		// A close-delimited body ends only at a clean FIN: after a
		// reset, a clean end towards the client would pass a cut
		// response off as complete (RFC 9112 section 6.3, item 8).
		e.met.UpstreamError(s.be.Index, metrics.ErrClosed)
		e.logf(levelWarn, "backend reset the connection mid-response", "backend", s.be.Addr, "client", s.ip)
		s.abort()
	default:
		e.met.UpstreamError(s.be.Index, metrics.ErrClosed)
		e.logf(levelWarn, "backend closed mid-response", "backend", s.be.Addr, "client", s.ip)
		s.abort()
	}
}

// badResponse answers 502 for a response pace cannot forward. Loop.
func (s *session) badResponse(err error) {
	e := s.lp.e
	e.met.UpstreamError(s.be.Index, metrics.ErrBadResponse)
	e.logf(levelWarn, "bad response from backend", "backend", s.be.Addr, "err", err)
	if s.up != nil {
		s.up.kill()
		s.up = nil
	}
	if s.headDone && !s.headQueued {
		// Some of the response has reached the client: only a reset
		// tells it the response is cut.
		s.abort()
		return
	}
	// Nothing has: a head still queued for the first body bytes (bad
	// chunking in the same read) is dropped for the 502.
	s.headQueued, s.headDone = false, false
	s.fail(502, "Bad Gateway", "502 Bad Gateway: the backend sent an invalid response\n")
}
