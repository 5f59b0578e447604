package engine

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/pace-proxy/pace/codec"
	"github.com/pace-proxy/pace/metrics"
	"github.com/pace-proxy/pace/ratelimit"
	"github.com/pace-proxy/pace/upstream"
)

// Session states.
const (
	stHead       uint8 = iota // waiting for a request head
	stConnecting              // waiting for an upstream dial
	stQueued                  // waiting for a backend connection to free up (descriptors exhausted)
	stExchange                // request sent (body may still stream), response expected or streaming
	stFlush                   // closing: waiting for the outbound buffer to drain
	stLinger                  // closing: write side shut, discarding input until EOF
	stClosed
)

// Deadline kinds.
const (
	dlNone uint8 = iota
	dlHeader
	dlIdle
	dlResponse
	dlFlush
	dlLinger
	dlQueue
	dlConnect
	dlSend // a response is held back for a client that does not read it
)

// readBufferCap is gnet's read buffer: the most one read takes from a
// socket.
const readBufferCap = 64 << 10

// replayMax is how much of a request body pace keeps to replay it on
// another backend when the first one fails before answering.
const replayMax = 64 << 10

// lingerTime is how long a closing connection is read and discarded after
// its last response, so that the client sees the response instead of a
// reset (nginx's lingering_close).
const lingerTime = 2e9

// session is one client connection. Loop only. The small fields sit
// together at the end of each group so that the struct fits Go's 896-byte
// allocation size class (TestSessionSize).
type session struct {
	next, prev *session
	lp         *loop
	cl         link
	peer       netip.Addr
	ip         []byte                   // the TCP peer address as text, appended to X-Forwarded-For
	values     func(string, int) []byte // s.req.Value bound to this session, made once

	st         uint8
	dl         uint8
	dead       bool
	inProcess  bool
	closeAfter bool
	gotBytes   bool   // some bytes of the current head arrived
	stallBody  bool   // request body waits for the backend to drain (watched)
	stallResp  bool   // response waits for the client to drain (watched)
	stallOut   bool   // the next request waits for the client to read its responses (watched)
	watched    bool   // on the loop's watch list
	sawNL      bool   // the partial head seen so far has a line feed
	unread     bool   // the client may still send bytes of a request pace did not read
	gen        uint32 // dial generation: a dial's outcome counts only if it still matches
	scanned    int32  // bytes of the partial head already looked at
	sendMark   int32  // client output queued when the dlSend deadline was set
	upMark     int32  // request bytes queued to the backend after the last body write burst (0: not taken)
	deadline   int64

	// current request
	req          codec.Request
	method       int
	minor        int
	start        int64
	target       []byte // copy, for the access log only
	decision     ratelimit.Decision
	head         []byte
	xff          []byte
	reqBody      codec.Body
	replay       []byte
	tried        uint64
	attempts     int
	be           *upstream.Backend
	up           *upconn
	reqMode      codec.BodyMode
	isHead       bool
	limited      bool // decision is set
	reqDone      bool
	replayOK     bool
	stale        bool     // while queued: the attempt before was a stale pooled connection
	staleRetried bool     // the one free retry after a stale pooled connection is used
	freshDial    bool     // while connecting or queued: for the free retry or a down backend's probe, so no other connection will do
	nvia         uint8    // entries of via in use
	via          [7]uint8 // backends that failed this request, in order, for the access log (the first 7)

	// current response
	resp        codec.Response
	respBody    codec.Body
	status      int
	bytesOut    int64
	respMode    codec.BodyMode
	headDone    bool
	headQueued  bool // the response head waits in lp.head for the first body bytes
	respStarted bool
	observed    bool // the request is counted in the histogram (and access log)
}

var (
	hdrXProxy  = []byte("X-Proxy")
	hdrXFF     = []byte("X-Forwarded-For")
	hdrXFP     = []byte("X-Forwarded-Proto")
	hdrXRealIP = []byte("X-Real-IP")
	hdrHost    = []byte("Host")
	valHTTP    = []byte("http")
	// Fields pace sets itself, dropped from what the client sent, and
	// the other forwarding fields, which only a proxy may set: a backend
	// that believes pace's X-Forwarded-Proto would believe a client's
	// Forwarded or X-Forwarded-Host too. A trusted proxy's are kept (see
	// buildHead); an HTTP/1.0 request's Expect is dropped too.
	dropReq = []string{"X-Proxy", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP",
		"Forwarded", "X-Forwarded-Host", "X-Forwarded-Port"}
	dropReq10 = []string{"X-Proxy", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP",
		"Forwarded", "X-Forwarded-Host", "X-Forwarded-Port", "Expect"}
	dropReqTrusted   = []string{"X-Proxy", "X-Forwarded-For"}
	dropReqTrusted10 = []string{"X-Proxy", "X-Forwarded-For", "Expect"}
	// A backend's own X-Backend would reach the client beside pace's.
	dropResp = []string{"X-Backend"}
	// interimOpts writes a 1xx head: hop-by-hop fields and dropResp go,
	// as from a final head, and pace adds nothing.
	interimOpts = codec.HeadOptions{Drop: dropResp}
)

// newSession starts serving a client connection. Loop.
func (lp *loop) newSession(c gnet.Conn) {
	e := lp.e
	s := lp.takeSession()
	s.cl.c = c
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		s.peer = ta.AddrPort().Addr().Unmap()
	}
	s.ip = s.peer.AppendTo(lp.takeBytes(48))
	s.req.Fields = lp.takeFields()
	s.resp.Fields = lp.takeFields()
	s.head = lp.takeBytes(0)
	s.xff = lp.takeBytes(0)
	c.SetContext(s)
	s.prev = lp.sessions.prev
	s.next = &lp.sessions
	lp.sessions.prev.next = s
	lp.sessions.prev = s
	e.met.ClientConns.Add(1) // e.clients was counted in OnOpen
	s.st = stHead
	s.setDeadline(dlHeader, e.headerTO)
}

func (s *session) setDeadline(kind uint8, d int64) {
	s.dl = kind
	if kind == dlNone {
		s.deadline = 0
		return
	}
	s.deadline = nanotime() + d
}

// onClientData handles readable client bytes. Loop (OnTraffic).
func (s *session) onClientData(c gnet.Conn) gnet.Action {
	switch s.st {
	case stFlush, stLinger, stClosed:
		_, _ = c.Discard(-1)
		return gnet.None
	}
	s.process()
	if s.dead || s.cl.c != c || s.st == stLinger {
		// stLinger: closing (the close closeNow queued is on its way):
		// a closing connection is never parked.
		return gnet.None
	}
	// Bound what a client can make pace hold while it is not consuming:
	// a request body the backend does not take fast enough, or pipelined
	// requests behind a response in progress.
	e := s.lp.e
	if (s.st != stHead || s.stallOut) && s.cl.buffered() > e.bufLimit {
		if s.cl.parked {
			return gnet.None // read while parked: gnet reads an erroring socket
		}
		if s.cl.park() {
			e.met.Parked.Inc()
			s.watch()
			return gnet.None
		}
		if s.cl.buffered() <= e.holdMax {
			return gnet.None // the poller refused: hold up to the hard bound
		}
		s.lp.e.logf(levelInfo, "closing client: buffered input over limit while not reading", "client", s.ip)
		s.abort()
	}
	return gnet.None
}

// process consumes client input as far as the session's state allows.
// Loop.
func (s *session) process() {
	if s.inProcess {
		return
	}
	s.inProcess = true
	for !s.dead && s.cl.c != nil {
		if s.st == stHead {
			if s.cl.c.OutboundBuffered() > s.lp.e.bufLimit {
				// Pipelined requests answered faster than the client
				// reads the answers (pace's own 429s or /metrics, or
				// small responses): take no more requests until it
				// catches up, so that its queued output stays bounded.
				// nginx, too, reads the next pipelined request only
				// after it has sent the last response.
				if !s.stallOut {
					s.stallOut = true
					s.awaitClient()
					s.watch()
				}
				break
			}
			if !s.readRequest() {
				break
			}
			continue
		}
		if s.st == stExchange && !s.reqDone {
			s.pumpBody()
		}
		break
	}
	s.inProcess = false
}

// readRequest parses one request head and acts on it. It returns true if
// the session should keep processing input. Loop.
func (s *session) readRequest() bool {
	in := s.cl.input()
	if len(in) == 0 {
		return false
	}
	e := s.lp.e
	// Parse scans the whole head each time; a client sending a head a
	// byte at a time would make that quadratic. Parse again only when a
	// new line ended, or when a limit may have been crossed.
	if s.scanned > 0 && int(s.scanned) <= len(in) {
		nl := bytes.IndexByte(in[s.scanned:], '\n') >= 0
		if !nl && len(in) <= e.limits.MaxHead && (s.sawNL || len(in) <= e.limits.MaxTarget) {
			s.scanned = clamp32(len(in))
			return false
		}
	}
	n, err := s.req.Parse(in, &e.limits)
	if err == codec.ErrNeedMore {
		if !s.gotBytes {
			s.gotBytes = true
			s.setDeadline(dlHeader, e.headerTO)
		}
		s.scanned = clamp32(len(in))
		s.sawNL = bytes.IndexByte(in, '\n') >= 0
		return false
	}
	s.gotBytes, s.scanned, s.sawNL, s.unread = false, 0, false, false
	if err != nil {
		s.badRequest(err, in)
		return false
	}
	r := &s.req
	s.start = nanotime()
	s.method = metrics.MethodIndex(r.Method)
	s.isHead = s.method == 1
	s.minor = r.Minor
	s.closeAfter = !r.KeepAlive || e.draining.Load()
	s.newExchange()
	if e.access != nil {
		s.target = append(s.target[:0], r.Target...)
	}
	hasBody := r.Body.Kind != codec.BodyNone

	path := r.Path // origin form, also for an absolute-form target
	if path == nil {
		path = r.Target
	}
	if e.metrics != "" && isPath(path, e.metrics) {
		s.cl.consume(n)
		if hasBody {
			s.closeAfter, s.unread = true, true
		}
		s.serveMetrics()
		return s.done()
	}
	if e.lim != nil {
		if k, ok := e.ext.KeyFromValues(s.peer, s.values); ok {
			s.decision = e.lim.Allow(k)
			s.limited = true
			if !s.decision.Allowed {
				s.cl.consume(n)
				if hasBody {
					s.closeAfter, s.unread = true, true
				}
				e.met.RateLimited.Inc()
				s.local(429, "Too Many Requests", "429 Too Many Requests: rate limit exceeded\n")
				return s.done()
			}
		}
	}
	if s.method == 5 { // CONNECT: pace is a reverse proxy, not a tunnel
		s.cl.consume(n)
		s.closeAfter, s.unread = true, true
		// RFC 9110 section 15.5.6: a 405 lists the methods that work.
		s.localWith(405, "Method Not Allowed", "405 Method Not Allowed: CONNECT is not supported\n",
			"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n")
		return s.done()
	}
	if r.Upgrade && codec.HasToken(r.Get("Upgrade"), "websocket") {
		s.cl.consume(n)
		s.closeAfter, s.unread = true, hasBody
		s.local(501, "Not Implemented", "501 Not Implemented: WebSocket upgrades are not supported yet\n")
		return s.done()
	}

	if limit := e.reqLimits.MaxBody; limit > 0 && r.Body.Kind == codec.BodyLength && r.Body.Length > limit {
		// Refused before any of the body is read (with Expect:
		// 100-continue, before the client sends it): RFC 9110 section
		// 15.5.14, nginx's client_max_body_size.
		e.logf(levelInfo, "request body over max_body_size", "client", s.ip, "length", r.Body.Length, "max", limit)
		s.cl.consume(n)
		s.closeAfter, s.unread = true, true
		s.local(413, "Content Too Large", "413 Content Too Large: the request body is over max_body_size\n")
		return s.done()
	}
	s.buildHead()
	s.reqMode = codec.ModeForward
	if r.Body.Kind == codec.BodyChunked {
		s.reqMode = codec.ModeRechunk
	}
	s.reqBody.ResetLimits(r.Body, s.reqMode, &e.reqLimits)
	s.reqDone = s.reqBody.Done()
	s.cl.consume(n) // r's slices are invalid from here on
	s.replay = s.replay[:0]
	s.replayOK = true
	s.tried, s.attempts, s.staleRetried = 0, 0, false
	if !s.connect(false) {
		s.noBackend()
	}
	return true
}

// buildHead writes the upstream request head into s.head. Loop.
func (s *session) buildHead() {
	e := s.lp.e
	r := &s.req
	s.xff = s.xff[:0]
	for i := 0; ; i++ {
		v := r.Value("X-Forwarded-For", i)
		if v == nil {
			break
		}
		if len(s.xff) > 0 {
			s.xff = append(s.xff, ", "...)
		}
		s.xff = append(s.xff, v...)
	}
	if len(s.xff) > 0 {
		s.xff = append(s.xff, ", "...)
	}
	s.xff = append(s.xff, s.ip...)
	extra := s.lp.extra[:0]
	extra = append(extra,
		codec.Field{Name: hdrXProxy, Value: e.proxyHdr},
		codec.Field{Name: hdrXFF, Value: s.xff})
	opts := codec.HeadOptions{Framing: r.Body, Drop: dropReq, DropUnderscore: e.dropUnder}
	if r.Minor == 0 {
		opts.Drop = dropReq10
		if r.Host == nil {
			extra = append(extra, codec.Field{Name: hdrHost, Value: e.hostHdr})
		}
	}
	if e.ext.Trusted(s.peer) {
		// A proxy in trusted_proxies (nginx terminating TLS) knows the
		// scheme and the client: its X-Forwarded-Proto and X-Real-IP
		// go on as sent. pace fills in only what it left out.
		opts.Drop = dropReqTrusted
		if r.Minor == 0 {
			opts.Drop = dropReqTrusted10
		}
		if r.Get("X-Forwarded-Proto") == nil {
			extra = append(extra, codec.Field{Name: hdrXFP, Value: valHTTP})
		}
		if r.Get("X-Real-IP") == nil {
			ip := e.ext.ClientIPFromValues(s.peer, s.values).AppendTo(s.lp.realIP[:0])
			extra = append(extra, codec.Field{Name: hdrXRealIP, Value: ip})
		}
	} else {
		extra = append(extra,
			codec.Field{Name: hdrXFP, Value: valHTTP},
			codec.Field{Name: hdrXRealIP, Value: s.ip})
	}
	opts.Extra = extra
	s.head = codec.AppendRequestHead(s.head[:0], r, &opts)
	clear(extra) // s.xff and s.ip go back to the spare list with s
}

// connect sends the request to the next backend: a pooled connection if
// the loop has one, else a new dial. stale says the previous attempt was
// a reused connection that closed before answering. It returns false,
// having done nothing, when no backend is left to try. Loop.
func (s *session) connect(stale bool) bool {
	e := s.lp.e
	now := nanotime()
	var be *upstream.Backend
	switch {
	case stale && s.be != nil:
		// The keep-alive race lost a connection, not a backend: one
		// fresh connection to the same one, which was up a moment ago
		// (and with max_retries = 0 there is no other to go to).
		be = s.be
	case s.tried != 0:
		// A retry after a backend failed goes only to one that is up:
		// with all of them failing, one attempt per request is enough
		// (Retry).
		be = e.bal.Retry(s.tried, now)
	default:
		// Nothing has failed yet (a dial skipped because its backend
		// went down, or one that met EMFILE, clears its bit): fall back
		// on a down backend rather than refuse the request (Pick).
		be = e.bal.Pick(s.tried, now)
	}
	if be == nil {
		return false
	}
	// After a pooled connection turned out stale, others in the pool
	// may be too (a restarted backend): the retry dials afresh.
	if !stale {
		if up := s.lp.takeIdle(be.Index); up != nil {
			s.use(be)
			s.attach(up)
			return true
		}
	}
	if e.fdsInUse() >= e.fdBudget && !s.lp.evictIdle() {
		s.enqueue(stale)
		return true
	}
	s.use(be)
	s.st = stConnecting
	// A dial to a backend not up is its probe after the cool-down (or
	// the fallback with every backend down): like the free retry's, it
	// must carry this request. Handed another connection, the session
	// would leave the probe with no exchange to prove the backend back,
	// and the backend down for another cool-down.
	pickedUp := be.Up(now)
	s.freshDial = stale || !pickedUp
	s.gen++
	s.lp.dialQ.push(s)
	// A dial ends within connect_timeout once a worker takes it; the
	// rest is the wait for a worker (or an enroll gnet never confirmed).
	s.setDeadline(dlConnect, 2*e.queueTO)
	e.uplinks.Add(1)
	e.transit.Add(1) // the dial's enroll; given back by dial
	up := &upconn{lp: s.lp, be: be, s: s, gen: s.gen, pickedUp: pickedUp}
	e.queueDial(up)
	return true
}

// noBackend answers a request no backend can take. Loop.
func (s *session) noBackend() {
	s.fail(502, "Bad Gateway", "502 Bad Gateway: no backend could take the request\n")
}

// use records an attempt on be. Loop.
func (s *session) use(be *upstream.Backend) {
	if prev := s.be; prev != nil && prev != be && s.tried&(1<<uint(prev.Index)) != 0 && int(s.nvia) < len(s.via) {
		// The attempt on prev failed (a skipped dial or a descriptor
		// shortage clears its bit: nothing was tried there). A fresh
		// connection to the same backend after the keep-alive race is
		// not listed again.
		s.via[s.nvia] = uint8(prev.Index)
		s.nvia++
	}
	s.be = be
	s.tried |= 1 << uint(be.Index)
	s.attempts++
}

// enqueue makes the request wait for a backend connection to free up on
// this loop, because a new one would need a descriptor pace does not have
// (HAProxy queues on a full server the same way). A connection finishing
// an exchange goes to the oldest waiter instead of the idle pool, and the
// sweep dials for waiters once descriptors are free again. After the
// backend connect timeout the request gets 503. stale is connect's: the
// wait ends in the same connect. Loop.
func (s *session) enqueue(stale bool) {
	s.st = stQueued
	s.stale, s.freshDial = stale, stale
	s.gen++ // an earlier entry of this session in a queue no longer counts
	s.setDeadline(dlQueue, s.lp.e.queueTO)
	s.lp.waitQ.push(s)
	s.lp.e.met.UpstreamQueued.Inc()
}

// dequeued sends the waiting request on up, a live connection that just
// finished an exchange. A session still dialing leaves its dial behind:
// the new connection, when it comes, goes to the next waiter or the
// idle pool (upconn.opened sees the attempt number changed). Loop.
func (s *session) dequeued(up *upconn) {
	if s.st == stConnecting {
		s.gen++
		s.attempts-- // the dial's attempt becomes this one
		s.tried &^= 1 << uint(s.be.Index)
	}
	s.use(up.be)
	s.attach(up)
}

// attach sends the request on up. Loop.
func (s *session) attach(up *upconn) {
	s.up = up
	up.s = s
	s.st = stExchange
	s.headDone, s.respStarted, s.upMark = false, false, 0
	if !up.write(s.head) || s.up != up {
		return
	}
	if len(s.replay) > 0 && (!up.write(s.replay) || s.up != up) {
		return
	}
	s.setDeadline(dlResponse, s.lp.e.respTO)
	if !s.reqDone {
		s.pumpBody()
	}
	if s.up == up && up.buffered() > 0 {
		s.pumpResponse(false)
	}
}

// pumpBody forwards request body bytes that have arrived. Loop.
func (s *session) pumpBody() {
	e := s.lp.e
	for !s.reqDone && !s.dead {
		up := s.up
		if up == nil || up.c == nil || s.cl.c == nil {
			return
		}
		if up.c.OutboundBuffered() > e.bufLimit {
			// The backend reads slowly: stop here. onClientData parks
			// the client if it keeps sending; poll resumes once the
			// backend drained.
			if !s.stallBody {
				s.stallBody = true
				s.upMark = upQueued(up)
				s.watch()
			}
			return
		}
		in := s.cl.input()
		if len(in) == 0 {
			return
		}
		// Step a copy of the framer, kept only once the bytes are written:
		// when the write fails, the retry it starts (inside the write)
		// forwards these bytes again from the client's input.
		rb := s.reqBody
		out, n, done, err := rb.Step(s.lp.scratch[:0], in)
		if err != nil {
			s.badBody(err)
			return
		}
		w := out
		if s.reqMode == codec.ModeForward {
			w = in[:n]
		}
		if len(w) > 0 {
			// A failed write closes up at once, and the retry that
			// follows forwards this body again from the client's input.
			if !up.write(w) || s.up != up || s.dead {
				return
			}
			if s.replayOK {
				if len(s.replay)+len(w) <= replayMax {
					s.replay = append(s.replay, w...)
				} else {
					s.replayOK = false
					s.replay = s.replay[:0]
				}
			}
		}
		s.reqBody = rb
		s.cl.consume(n)
		if n > 0 && s.dl == dlResponse {
			s.setDeadline(dlResponse, e.respTO)
		}
		if done {
			s.reqDone = true
			if !s.replayOK || up.c != nil && up.c.OutboundBuffered() > 0 {
				// A body over 64 KiB may sit in the socket for a
				// while (see expired).
				s.upMark = upQueued(up)
			}
			return
		}
		if n == 0 {
			return
		}
	}
}

// badBody handles a malformed request body (bad chunk). Loop.
func (s *session) badBody(err error) {
	msg := err.Error()
	if err == codec.ErrBodyTooLarge {
		s.lp.e.logf(levelInfo, "chunked request body over max_body_size", "client", s.ip, "max", s.lp.e.reqLimits.MaxBody)
		msg = "the request body is over max_body_size"
	} else {
		s.lp.e.met.BadRequests.Inc()
		s.lp.e.logf(levelInfo, "bad request body", "client", s.ip, "err", err)
	}
	if s.up != nil {
		s.up.kill()
		s.up = nil
	}
	if s.headDone {
		s.abort()
		return
	}
	s.closeAfter, s.unread = true, true
	s.reqDone = true
	st := codec.StatusOf(err)
	s.local(st, statusText(st), strconv.Itoa(st)+" "+statusText(st)+": "+msg+"\n")
	s.done()
}

// newExchange forgets the last exchange's outcome (status, bytes, the
// backends tried, whether it was counted) as a new request begins: one
// pace answers without parsing it (400, 408) included, or it would be
// taken for the last one, already counted. Loop.
func (s *session) newExchange() {
	s.status, s.bytesOut, s.limited, s.observed = 0, 0, false, false
	s.be, s.nvia = nil, 0
}

// badRequest answers a request head pace rejected and closes. Loop.
func (s *session) badRequest(err error, in []byte) {
	e := s.lp.e
	st := codec.StatusOf(err)
	e.met.BadRequests.Inc()
	e.logf(levelInfo, "bad request", "client", s.ip, "status", st, "err", err)
	s.newExchange()
	s.start = nanotime()
	// Label and log it with what the request line shows, when that much
	// is plain: its method if known, its target if printable.
	method, target := requestLineGuess(in)
	s.method = metrics.MethodIndex(method)
	if e.access != nil {
		s.target = append(s.target[:0], target...)
	}
	s.isHead = false
	s.minor = 1
	s.closeAfter, s.unread = true, true
	s.limited = false
	s.local(st, statusText(st), strconv.Itoa(st)+" "+statusText(st)+": "+err.Error()+"\n")
	s.done()
}

// local writes a response pace generates itself and records it. Loop.
func (s *session) local(status int, reason, body string) {
	s.localWith(status, reason, body, "")
}

// localWith is local with extra header lines (each ending in CRLF). Loop.
func (s *session) localWith(status int, reason, body, extra string) {
	e := s.lp.e
	s.status = status
	if s.cl.c == nil {
		return
	}
	h := s.lp.head[:0]
	h = append(h, "HTTP/1.1 "...)
	h = strconv.AppendInt(h, int64(status), 10)
	h = append(h, ' ')
	h = append(h, reason...)
	h = append(h, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(body)), 10)
	h = append(h, "\r\n"...)
	h = append(h, extra...)
	if s.limited {
		h = e.lim.AppendHeaders(h, s.decision)
	}
	h = appendConnection(h, s.closeAfter, s.minor)
	h = append(h, "\r\n"...)
	if !s.isHead {
		h = append(h, body...)
	}
	s.lp.head = h[:0]
	s.bytesOut = int64(len(body))
	// Counted before the write: a write that fails closes the client
	// from inside it, and closed() must not count the request again.
	s.record()
	// Every caller ends the exchange next (done, closeGracefully), as
	// writeClientv's end requires: it may shut the writing side.
	s.writeClientv(h, nil, s.closing()) // a parked client is written to: only its reading is paused
}

// record counts the current request in the histogram and the access log,
// once. Loop.
func (s *session) record() {
	if s.observed {
		return
	}
	s.observed = true
	e := s.lp.e
	e.met.Observe(s.method, s.status, float64(nanotime()-s.start)/1e9)
	if e.access != nil {
		e.access.request(s)
	}
}

func appendConnection(h []byte, close bool, minor int) []byte {
	if close {
		return append(h, "Connection: close\r\n"...)
	}
	if minor == 0 {
		return append(h, "Connection: keep-alive\r\n"...)
	}
	return h
}

// fail answers the current request with an error pace generates (the
// backend part failed before any of its response reached the client) and
// moves on. Loop.
func (s *session) fail(status int, reason, body string) {
	if s.up != nil {
		s.up.kill()
		s.up = nil
	}
	if !s.reqDone {
		s.closeAfter, s.unread = true, true
	}
	s.local(status, reason, body)
	s.done()
	s.process()
}

// writeClient queues b for the client. gnet closes a connection whose
// write fails from inside Write, so the session may be closed when it
// returns; the result says whether it is still usable. Loop.
func (s *session) writeClient(b []byte) bool { return s.writeClientv(b, nil, false) }

// writeClientv queues a and then b (b may be empty) for the client, one
// system call for both. end says they are the last bytes the connection
// carries: the exchange is over, and the caller ends it (done,
// closeGracefully), which closes the connection; nothing may be written
// to it after them. With nothing queued ahead of them, sendEnd then
// writes them and the FIN in one segment instead of two: a one-request
// connection's client is woken once for its answer and the end of it,
// not twice, and under ab pace spends about 10% less CPU per
// connection. gnet writes what sendEnd did not, and the FIN follows it
// at the close. The result is writeClient's. Loop.
func (s *session) writeClientv(a, b []byte, end bool) bool {
	if s.dead || s.cl.c == nil {
		return false
	}
	c := s.cl.c
	if end && c.OutboundBuffered() == 0 {
		if a, b = skip(a, b, s.lp.sendEnd(c.Fd(), a, b)); len(a) == 0 {
			return true
		}
	}
	if len(b) == 0 {
		_, _ = c.Write(a)
	} else {
		iov := &s.lp.iov
		iov[0], iov[1] = a, b
		_, _ = c.Writev(iov[:])
		iov[0], iov[1] = nil, nil
	}
	return !s.dead && s.cl.c != nil
}

// skip drops the first n bytes of a followed by b, n at most their total
// length. What is left starts in the first result, which is empty only
// when nothing is. Any goroutine.
func skip(a, b []byte, n int) ([]byte, []byte) {
	if n < len(a) {
		return a[n:], b
	}
	return b[n-len(a):], nil
}

// closing reports whether the connection closes after the current
// exchange. Loop.
func (s *session) closing() bool { return s.closeAfter || s.lp.e.draining.Load() }

// done ends the current exchange: the session closes if it must, or waits
// for the next request. It returns true if input may be processed. Loop.
func (s *session) done() bool {
	if s.dead {
		return false
	}
	if s.closing() {
		s.closeGracefully()
		return false
	}
	s.st = stHead
	s.gotBytes = false
	s.setDeadline(dlIdle, s.lp.e.idleTO)
	return true
}

// retryOrFail retries the request on another backend if that is safe,
// else answers status. sent says the request may have reached a backend.
// Loop.
func (s *session) retryOrFail(sent, stale bool, status int, reason, body string) {
	s.retryOrFailCounted(true, sent, stale, status, reason, body)
}

// retryOrFailCounted is retryOrFail; counted false leaves
// pace_upstream_retries_total alone, for a request that picks again
// because its dial was skipped: nothing was tried, so nothing is retried.
// Loop.
func (s *session) retryOrFailCounted(counted, sent, stale bool, status int, reason, body string) {
	e := s.lp.e
	// A pooled connection the backend closed before answering is the
	// keep-alive race, not a failed backend: like nginx, pace does not
	// count that attempt, so max_retries = 0 still gets one fresh
	// connection to the same backend. upstreamEOF calls it stale only
	// for a request that may take that retry, once: a second stale
	// connection is a failure like any other, and its retry goes to
	// another backend (it used to go to the same one, and a request
	// could fail there on a backend just killed).
	if stale {
		s.staleRetried = true
		s.attempts--
	}
	if s.attempts <= e.retries && s.replayOK && (!sent || s.idempotent()) && !s.dead {
		if e.retryTO != 0 && nanotime()-s.start >= e.retryTO {
			// retry_timeout bounds the whole request, not each attempt.
			e.logf(levelDebug, "not retried: retry_timeout has passed", "backend", s.be.Addr, "client", s.ip, "status", status)
		} else if s.connect(stale) {
			if counted {
				e.met.Retries.Inc()
			}
			return
		}
	}
	// Not retried, or no backend left to try: the answer is this
	// failure's (a dial timeout stays 504), not "no backend".
	s.fail(status, reason, body)
}

// idempotent reports RFC 9110 section 9.2.2 idempotency of the method.
func (s *session) idempotent() bool {
	switch metrics.Methods[s.method] {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// closeGracefully flushes what is queued for the client, shuts down the
// write side and discards input for a moment before closing. Loop.
func (s *session) closeGracefully() {
	if s.dead || s.st == stFlush || s.st == stLinger {
		return
	}
	s.st = stFlush
	// Timed like send_timeout, by the client's progress (see expired):
	// a slow reader whose response is still queued is not cut off at
	// some fixed time with a clean-looking FIN.
	s.sendMark = 0
	if s.cl.c != nil {
		s.sendMark = clamp32(s.cl.c.OutboundBuffered())
	}
	s.setDeadline(dlFlush, s.lp.e.sendTO)
	if s.cl.c == nil {
		return
	}
	s.flush()
}

// flush lingers once the client's output has drained, and until then
// watches for it. Loop.
func (s *session) flush() {
	if s.cl.c.OutboundBuffered() == 0 {
		s.linger()
		return
	}
	s.watch()
}

func (s *session) linger() {
	if s.cl.parked {
		// Its input waits in the kernel, where pace left it: closing
		// now would reset the connection and lose the end of the
		// response still on its way. Read it again, and linger.
		if s.cl.unpark(s.lp, s.resumed); s.dead || s.cl.c == nil {
			return
		}
	} else if !s.unread && s.cl.buffered() == 0 {
		// Nothing more is expected from the client: close now, as nginx
		// does after a complete exchange, instead of waiting for its FIN.
		s.st = stLinger
		s.closeNow()
		return
	}
	s.st = stLinger
	_ = unix.Shutdown(s.cl.c.Fd(), unix.SHUT_WR)
	_, _ = s.cl.c.Discard(-1)
	s.setDeadline(dlLinger, lingerTime)
}

// closeNow closes the client connection at once. Loop.
func (s *session) closeNow() {
	// None of the request's deadlines applies now, but keep one: inside
	// the client's callback the close is only queued.
	s.setDeadline(dlLinger, lingerTime)
	if s.cl.c != nil {
		// Inside the client's own callback the close happens after it
		// returns; until then its input is discarded, never parsed.
		s.st = stLinger
		s.lp.closeConn(s.cl.c)
		return
	}
	s.closed(nil)
}

// abort closes the client with a reset, so that a response cut short can
// never look complete, and drops the upstream connection. Loop.
func (s *session) abort() {
	s.unfinished()
	if s.up != nil {
		s.up.kill()
		s.up = nil
	}
	if s.cl.c != nil {
		_ = s.cl.c.SetLinger(0)
	}
	s.closeNow()
}

// closed cleans up after the client connection closed. Loop (OnClose).
func (s *session) closed(err error) {
	if s.dead {
		return
	}
	s.dead = true
	e := s.lp.e
	s.prev.next = s.next
	s.next.prev = s.prev
	s.next, s.prev = nil, nil
	e.clients.Add(-1)
	e.met.ClientConns.Add(-1)
	s.unfinished()
	if s.up != nil {
		s.up.kill()
		s.up = nil
	}
	s.cl.c = nil
	s.cl.parked = false
	s.st = stClosed
	s.recycle()
	s.lp.putSession(s)
}

// unfinished records a request whose exchange ends before its response
// was complete: under the status already sent, else 499 (the client went
// away first, or pace gave up on it), as nginx logs it. It leaves the
// session in stLinger, so that it counts once. Loop.
func (s *session) unfinished() {
	switch s.st {
	case stExchange, stConnecting, stQueued:
	default:
		return
	}
	if s.status == 0 {
		s.status = 499
	}
	s.record()
	s.st = stLinger
}

// recycle hands the session's buffers to its loop for the next client.
// Every path that can still reach a dead session checks s.dead before
// touching them, and the nil slices left here only allocate again. Loop.
func (s *session) recycle() {
	lp := s.lp
	lp.putFields(s.req.Fields)
	lp.putFields(s.resp.Fields)
	lp.putBytes(s.head)
	lp.putBytes(s.xff)
	lp.putBytes(s.ip)
	s.req.Fields, s.resp.Fields = nil, nil
	s.req.Release() // a spare keeps no path scratch (up to max_uri_size) until reused
	s.head, s.xff, s.ip = nil, nil, nil
}

// expired handles a passed deadline. Loop (sweep).
func (s *session) expired(now int64) {
	e := s.lp.e
	switch s.dl {
	case dlHeader:
		if s.gotBytes && s.cl.c != nil {
			s.newExchange()
			s.closeAfter, s.unread = true, true
			s.start = now
			s.method = metrics.MethodOther
			if e.access != nil {
				s.target = append(s.target[:0], dash...) // not the last request's
			}
			s.minor = 1
			s.isHead = false
			s.limited = false
			s.local(408, "Request Timeout", "408 Request Timeout\n")
			s.closeGracefully()
			return
		}
		s.closeNow()
	case dlIdle:
		if s.cl.c != nil && s.cl.c.OutboundBuffered() > 0 {
			// The last response is still on its way to a slow reader:
			// like nginx's keepalive_timeout, idle time starts once it
			// is sent; until then send_timeout applies (poll goes back
			// to idle when the output drains).
			s.awaitClient()
			s.watch()
			return
		}
		s.closeNow()
	case dlFlush:
		if s.cl.c != nil && s.cl.c.OutboundBuffered() > 0 {
			if out := clamp32(s.cl.c.OutboundBuffered()); out < s.sendMark {
				s.sendMark = out // it took some: send_timeout again
				s.setDeadline(dlFlush, e.sendTO)
				return
			}
			// A reset, not a FIN: the response must not look complete.
			e.logf(levelInfo, "closing client: it read none of its response in send_timeout", "client", s.ip)
			s.abort()
			return
		}
		s.closeNow()
	case dlLinger:
		s.closeNow()
	case dlQueue:
		e.logf(levelWarn, "no backend connection freed up in time", "client", s.ip)
		s.fail(503, "Service Unavailable", "503 Service Unavailable: no backend connection freed up in time\n")
	case dlConnect:
		// The dial this request waits for has not finished. Leave it
		// behind: its connection, if it comes, goes to the pool.
		e.logf(levelWarn, "no backend connection in time", "backend", s.be.Addr, "client", s.ip)
		s.gen++
		s.retryOrFail(false, false, 504, "Gateway Timeout", "504 Gateway Timeout: no connection to the backend in time\n")
	case dlSend:
		// The response waits for the client, not for the backend: the
		// client has send_timeout to take some of it, like nginx's
		// send_timeout between two successful writes.
		if s.st == stHead && s.cl.c != nil && s.cl.c.OutboundBuffered() == 0 {
			s.idleAgain() // it caught up between two polls
			return
		}
		if s.st == stExchange && (s.cl.c == nil || s.cl.c.OutboundBuffered() <= e.bufLimit) && (s.up == nil || !s.up.parked) {
			// The client caught up (or was parked for its pipelined
			// input with nothing queued): what is awaited now is the
			// backend. Not while the backend is parked for the client:
			// it is unparked only below the low-water mark, so a client
			// that stopped reading above it would be timed as a silent
			// backend.
			s.setDeadline(dlResponse, e.respTO)
			return
		}
		if s.cl.c != nil {
			if clamp32(s.cl.c.OutboundBuffered()) < s.sendMark {
				s.awaitClient() // it took some: send_timeout again
				return
			}
		}
		e.logf(levelInfo, "closing client: it read none of its response in send_timeout", "client", s.ip)
		s.abort()
	case dlResponse:
		be := s.be
		if !s.headDone && s.upMark > 0 && s.up != nil {
			// response_timeout runs from pace's last body write, but
			// up to 4 MiB of body may still wait in the socket, and the
			// kernel wakes pace to write more only once a third of it
			// is free: a backend that reads a large body slowly but
			// steadily has not stalled while what is queued for it
			// keeps shrinking.
			if q := upQueued(s.up); q >= 0 && q < s.upMark {
				s.upMark = q
				s.setDeadline(dlResponse, e.respTO)
				return
			}
		}
		if s.headDone {
			e.logf(levelWarn, "backend stalled mid-response", "backend", be.Addr, "client", s.ip)
			e.met.UpstreamError(be.Index, metrics.ErrTimeout)
			s.abort()
			return
		}
		// A client that sent Expect: 100-continue and none of its body
		// waits for the backend's 100 (RFC 9110 section 10.1.1), and a
		// backend that sends nothing at all is the one at fault.
		waits100 := !s.reqDone && s.req.Expect100 && !s.respStarted && s.replayOK && len(s.replay) == 0
		if !s.reqDone && !s.stallBody && !waits100 {
			// The client stopped sending its request body, and the
			// backend may be waiting for it: the client's fault, not
			// the backend's (nginx: client_body_timeout, 408).
			e.logf(levelInfo, "client stalled its request body", "client", s.ip, "backend", be.Addr)
			s.fail(408, "Request Timeout", "408 Request Timeout: the request body did not arrive in time\n")
			return
		}
		e.met.UpstreamError(be.Index, metrics.ErrTimeout)
		e.bal.Failure(be, now)
		e.logf(levelWarn, "backend timed out", "backend", be.Addr, "client", s.ip)
		if s.reqDone || waits100 {
			// No response head has reached the client: an idempotent
			// request goes to another backend (retryOrFail's rules), as
			// nginx's default proxy_next_upstream "error timeout" does.
			// The backend may still be working on it, so a request
			// that is not idempotent gets the 504. A client waiting for
			// a 100 sends its body to the next backend.
			if up := s.up; up != nil {
				s.up = nil
				up.kill()
			}
			s.retryOrFail(true, false, 504, "Gateway Timeout", "504 Gateway Timeout: the backend did not answer in time\n")
			return
		}
		s.closeAfter = true
		s.fail(504, "Gateway Timeout", "504 Gateway Timeout: the backend did not answer in time\n")
	default:
		s.deadline = 0
	}
}

// drain makes the session close at the next opportunity. Loop.
func (s *session) drain() {
	s.closeAfter = true
	if s.st == stHead && s.cl.c != nil && s.cl.buffered() == 0 {
		// Between requests, but the last response may still be queued
		// for a slow client: closeGracefully flushes it first (and
		// closes at once when nothing is queued).
		s.closeGracefully()
	}
}

// awaitClient times a wait for the client to read what is queued for it
// by send_timeout, noting how much is queued now to tell progress at
// expiry. Loop.
func (s *session) awaitClient() {
	s.sendMark = clamp32(s.cl.c.OutboundBuffered())
	s.setDeadline(dlSend, s.lp.e.sendTO)
}

// watch puts s on its loop's watch list, once: poll drops it when no
// condition it watches for holds any more. Loop.
func (s *session) watch() {
	if !s.watched && !s.dead {
		s.watched = true
		s.lp.addWatch(s)
	}
}

// poll implements watcher. It resumes what waited for a peer to drain: a
// request body (stallBody), a response (stallResp) or the next request
// (stallOut); lingers a flushing session once its output drained; and
// unparks a parked client once it may send again.
func (s *session) poll(now int64) bool {
	if s.dead {
		return false
	}
	s.watched = false // this entry goes unless poll keeps it; s.watch adds anew
	lw := s.lp.e.lowWater
	if s.stallBody && (s.up == nil || s.up.c == nil || s.up.c.OutboundBuffered() <= lw) {
		s.stallBody = false
		s.process()
	}
	if s.stallResp && (s.cl.c == nil || s.up == nil || s.cl.c.OutboundBuffered() <= lw) {
		s.stallResp = false
		if s.up != nil && s.cl.c != nil {
			s.pumpResponse(false)
		}
	}
	if s.stallOut && (s.cl.c == nil || s.cl.c.OutboundBuffered() <= lw) {
		s.stallOut = false
		if s.dl == dlSend && s.st == stHead {
			s.idleAgain()
		}
		s.process()
	}
	if !s.dead && !s.stallOut && s.dl == dlSend && s.st == stHead &&
		s.cl.c != nil && s.cl.c.OutboundBuffered() == 0 {
		s.idleAgain() // the last response drained (see expired, dlIdle)
	}
	if !s.dead && s.st == stFlush && s.cl.c != nil && s.cl.c.OutboundBuffered() == 0 {
		s.linger()
	}
	if !s.dead && s.cl.parked && !s.cl.resuming && s.wantsInput() {
		s.cl.unpark(s.lp, s.resumed)
	}
	keep := !s.dead && (s.stallBody || s.stallResp || s.stallOut ||
		(s.dl == dlSend && s.st == stHead && s.cl.c != nil) ||
		(s.st == stFlush && s.cl.c != nil) || (s.cl.parked && !s.cl.resuming))
	if !keep || s.watched {
		return false // done, or already added again during this poll
	}
	s.watched = true
	return true
}

// idleAgain goes back, after a wait for the client to read, to the
// deadline the wait replaced: the next head's if some of it came, else
// the idle one done() set. Loop.
func (s *session) idleAgain() {
	if s.gotBytes {
		s.setDeadline(dlHeader, s.lp.e.headerTO)
	} else {
		s.setDeadline(dlIdle, s.lp.e.idleTO)
	}
}

// wantsInput reports whether the session would consume client bytes now,
// so that a parked client is read again: between requests unless answers
// are still piling up for it (stallOut), a request body once the backend
// took what was sent (as poll's stallBody), and a lingering close, which
// reads until the client's FIN. A parked client is written to all along.
func (s *session) wantsInput() bool {
	switch s.st {
	case stHead:
		return !s.stallOut
	case stExchange:
		return !s.reqDone && s.up != nil && s.up.c != nil && s.up.c.OutboundBuffered() <= s.lp.e.lowWater
	case stLinger:
		return true
	}
	return false
}

// clamp32 converts a length to int32, saturating.
func clamp32(n int) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}

// resumed serves, once the client is read again after parking, what it
// sent meanwhile and what the backend answered. Loop.
func (s *session) resumed() {
	if s.dead {
		return
	}
	if s.up != nil && (s.up.buffered() > 0 || s.up.eof) {
		s.pumpResponse(false)
	}
	switch {
	case s.dead || s.st == stLinger:
	case s.st == stFlush:
		s.flush()
	default:
		s.process()
	}
}

// requestLineGuess returns the method and target of a request line that
// failed to parse, where they are plain: a method is a token before the
// first SP; a target is up to 256 visible ASCII bytes before the next SP
// or line end, else "-". No allocation.
func requestLineGuess(in []byte) (method, target []byte) {
	sp := bytes.IndexByte(in[:min(len(in), 24)], ' ')
	if sp <= 0 {
		return nil, dash
	}
	rest := in[sp+1:]
	end := 0
	for end < len(rest) && end <= 256 && rest[end] > ' ' && rest[end] < 0x7f {
		end++
	}
	if end == 0 || end > 256 || (end < len(rest) && rest[end] != ' ' && rest[end] != '\r' && rest[end] != '\n') {
		return in[:sp], dash
	}
	return in[:sp], rest[:end]
}

var dash = []byte("-")

// isPath reports whether target is path, optionally followed by a query.
func isPath(target []byte, path string) bool {
	if len(target) < len(path) || string(target[:len(path)]) != path {
		return false
	}
	return len(target) == len(path) || target[len(path)] == '?'
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}
