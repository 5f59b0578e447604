package engine

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/pace-proxy/pace/codec"
)

// loop is the state one event loop owns: its sessions, its idle upstream
// connections per backend, and scratch buffers. Loop only, except the
// atomics.
type loop struct {
	e  *Engine
	el gnet.EventLoop

	idle     [][]*upconn // per backend, LIFO
	sessions session     // sentinel of the circular list of live sessions
	watch    []watcher   // parked or flushing connections, checked every tick
	watching atomic.Int32
	queued   atomic.Bool // a tick is queued on the loop

	cur     gnet.Conn // the connection whose gnet callback is running, if any
	scratch []byte    // body re-framing output; reused per call
	head    []byte    // response heads; reused per call
	sweep   gnet.RunnableFunc
	fast    gnet.RunnableFunc
	ticks   atomic.Int64 // ticks run, for tests
	// Per-call scratch: the fields added to a request head, and the
	// writev vector for a response head and body. Held here rather than
	// in every session, which helps keep a session in the 896-byte
	// allocation size class (TestSessionSize).
	extra  [5]codec.Field
	iov    [2][]byte
	peek   [1]byte // upconn.unread's receive buffer
	end    endScratch
	realIP [64]byte // X-Real-IP's value when it is not the peer's text

	// Buffers of closed sessions, handed to new ones, so that one request
	// per connection (ab without -k) does not regrow a field list and a
	// head buffer for every client. Bounded by maxSpare entries and the
	// capacity limits in putFields and putBytes.
	spareFields [][]codec.Field
	spareBytes  [][]byte
	// Closed sessions, reused for new clients: a session is most of what
	// a connection allocates, and with one request per connection the
	// garbage collector ran about every 75 ms at 10,000 connections a
	// second. Bounded by maxSpare. See putSession for which ones qualify.
	spareSessions []*session

	// Sessions waiting for a backend connection, oldest first: queued
	// ones (out of descriptors, no dial) and dialing ones. A connection
	// that finishes an exchange goes to them before the idle pool.
	waitQ fifo
	dialQ fifo
}

// fifo is a queue of sessions waiting in one state. An entry holds the
// session's attempt number (gen) at push; entries that stopped waiting
// (closed, timed out, served, or pushed again for a later attempt) are
// dropped when reached, so a session that waits again goes to the back.
// Loop only.
type fifo struct {
	q    []waiter
	head int
}

type waiter struct {
	s   *session
	gen uint32
}

func (f *fifo) push(s *session) { f.q = append(f.q, waiter{s, s.gen}) }

// live reports whether w still waits in state st.
func (w waiter) live(st uint8) bool {
	return w.s != nil && !w.s.dead && w.s.st == st && w.s.gen == w.gen
}

// pop removes and returns the oldest live session in state st, or nil.
func (f *fifo) pop(st uint8) *session { return f.popFor(st, -1) }

// popFor is pop for a connection to backend index be (-1: any): it skips
// (and leaves waiting) sessions that be already failed, which are
// retrying elsewhere. A dialing session's current attempt is in its tried
// set too (as s.be); that one does not count as failed. A session dialing
// or queued for the keep-alive race's free retry, or dialing a down
// backend's probe (freshDial), is not handed a connection (be >= 0): the
// first wants a new one, as a pooled one may be stale like the one it
// lost (a queued one waits for serveWaiters, whose pop takes it, to
// dial), and the probe needs this request's exchange to prove its backend
// back. A match past the front leaves a hole.
func (f *fifo) popFor(st uint8, be int) *session {
	var bit uint64
	if be >= 0 {
		bit = 1 << uint(be)
	}
	for i := f.head; i < len(f.q); i++ {
		w := f.q[i]
		if !w.live(st) {
			if i == f.head {
				f.q[i] = waiter{}
				f.head++
			}
			continue
		}
		failed := w.s.tried
		if st == stConnecting && w.s.be != nil {
			failed &^= 1 << uint(w.s.be.Index)
		}
		if failed&bit != 0 || be >= 0 && w.s.freshDial {
			continue
		}
		f.q[i] = waiter{}
		if i == f.head {
			f.head++
		}
		return w.s
	}
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	}
	return nil
}

// unpop puts back the session the last pop returned, at the front.
func (f *fifo) unpop(s *session) {
	f.head--
	f.q[f.head] = waiter{s, s.gen}
}

// prune drops the entries that stopped waiting, so that a quiet loop
// does not keep closed sessions reachable.
func (f *fifo) prune(st uint8) {
	keep := f.q[:0]
	for _, w := range f.q[f.head:] {
		if w.live(st) {
			keep = append(keep, w)
		}
	}
	clear(f.q[len(keep):])
	f.q, f.head = keep, 0
}

// nextWaiter pops the session that has waited longest for a connection
// to backend index be: queued ones first, since they have no dial in
// flight. A session retrying because be failed it is not given one. Loop.
func (lp *loop) nextWaiter(be int) *session {
	if s := lp.waitQ.popFor(stQueued, be); s != nil {
		return s
	}
	return lp.dialQ.popFor(stConnecting, be)
}

// serveWaiters dials for queued sessions while descriptors allow, closing
// idle pooled connections of this loop to free them. When waiters remain
// and this loop has none left to close, the other loops are asked to
// close theirs: idle connections elsewhere must not hold the descriptors
// a waiter here needs until it times out. Loop.
func (lp *loop) serveWaiters() {
	e := lp.e
	for {
		s := lp.waitQ.pop(stQueued)
		if s == nil {
			return
		}
		if e.fdsInUse() >= e.fdBudget && !lp.evictIdle() {
			lp.waitQ.unpop(s)
			break
		}
		if !s.connect(s.stale) {
			s.noBackend()
		}
	}
	lp.waitQ.prune(stQueued)
	e.evictIdleElsewhere(lp, len(lp.waitQ.q))
}

// evictIdleElsewhere asks the loops other than lp to close up to n idle
// connections between them, to free descriptors for n waiters on lp.
// Loop (lp's); the other loops do it on their own turn.
func (e *Engine) evictIdleElsewhere(lp *loop, n int) {
	list := e.loopList.Load()
	if n <= 0 || list == nil || len(*list) < 2 {
		return
	}
	per := (n + len(*list) - 2) / (len(*list) - 1)
	for _, o := range *list {
		if o != lp {
			o.exec(func() {
				for i := 0; i < per && o.evictIdle(); i++ {
				}
			})
		}
	}
}

// Bounds on the buffers a loop keeps for reuse.
const (
	maxSpare       = 256     // entries per list
	maxSpareFields = 64      // field slots in one kept field list
	maxSpareBytes  = 8 << 10 // bytes in one kept buffer
)

// takeFields returns an empty field list, reused when one is spare, else
// nil (append allocates as fields arrive). Loop.
func (lp *loop) takeFields() []codec.Field { return takeSpare(&lp.spareFields) }

// takeSpare pops the last element of list, or returns the zero value. No
// kept element is a zero value (a kept slice has capacity), so the zero
// value means the list was empty.
func takeSpare[E any](list *[]E) E {
	var zero E
	n := len(*list)
	if n == 0 {
		return zero
	}
	v := (*list)[n-1]
	(*list)[n-1] = zero
	*list = (*list)[:n-1]
	return v
}

// putFields keeps f for a later session. Its Name and Value slices alias
// gnet's read buffers; they are cleared so the list pins none of them. Loop.
func (lp *loop) putFields(f []codec.Field) {
	if cap(f) == 0 || cap(f) > maxSpareFields || len(lp.spareFields) >= maxSpare {
		return
	}
	f = f[:cap(f)]
	clear(f)
	lp.spareFields = append(lp.spareFields, f[:0])
}

// takeSession returns a session for a new client: a spare one, else a new
// one. Its fields are zero but for lp, values, gen and spare capacity in
// target. Loop.
func (lp *loop) takeSession() *session {
	if s := takeSpare(&lp.spareSessions); s != nil {
		// Reset here, not in putSession: a call chain that closed s may
		// still write to it (a failed write closes the session inside
		// Write), and OnOpen never runs inside another callback, so by
		// now every such chain has returned.
		*s = session{lp: lp, values: s.values, gen: s.gen + 1, target: s.target[:0]}
		return s
	}
	s := &session{lp: lp}
	s.values = s.req.Value
	return s
}

// putSession keeps the closed session s for a later client; takeSession
// resets it. Every reference to a session that outlives it is either
// checked against its attempt number (gen: waiter queues, dials in
// flight), which the reset moves on, or keeps s out of the pool: an entry
// on the watch list (until the next tick drops it) or an unpark's resumed
// queued on the loop, which would find the new client's session. Until taken,
// s stays dead, as every stale reference expects, and untouched. A spare
// holds at most maxSpareBytes in each of its target and replay buffers
// (the reset drops replay), no request path scratch (recycle releases
// it) and nothing read while parked: its request fields may point into
// that. Loop.
func (lp *loop) putSession(s *session) {
	if s.watched || s.cl.resuming || cap(s.cl.pend) > 0 ||
		cap(s.target) > maxSpareBytes || cap(s.replay) > maxSpareBytes ||
		len(lp.spareSessions) >= maxSpare {
		return
	}
	lp.spareSessions = append(lp.spareSessions, s)
}

// takeBytes returns an empty buffer, reused when one is spare, else a new
// one with capacity size (size 0: nil). Loop.
func (lp *loop) takeBytes(size int) []byte {
	if b := takeSpare(&lp.spareBytes); b != nil || size == 0 {
		return b
	}
	return make([]byte, 0, size)
}

// putBytes keeps b for a later session. Loop.
func (lp *loop) putBytes(b []byte) {
	if cap(b) == 0 || cap(b) > maxSpareBytes || len(lp.spareBytes) >= maxSpare {
		return
	}
	lp.spareBytes = append(lp.spareBytes, b[:0])
}

// watcher is something the fast tick polls: a parked link waiting for its
// peer to drain, or a session flushing before it closes.
type watcher interface {
	// poll returns false once the watcher no longer needs polling.
	poll(now int64) bool
}

func newLoop(e *Engine, el gnet.EventLoop) *loop {
	lp := &loop{
		e:       e,
		el:      el,
		idle:    make([][]*upconn, len(e.bal.Backends)),
		scratch: make([]byte, 0, 64<<10),
		head:    make([]byte, 0, 4096),
	}
	lp.sessions.next, lp.sessions.prev = &lp.sessions, &lp.sessions
	lp.sweep = func(context.Context) error { lp.tick(true); return nil }
	lp.fast = func(context.Context) error { lp.tick(false); return nil }
	return lp
}

func (lp *loop) tickFn(sweep bool) gnet.Runnable {
	if sweep {
		return lp.sweep
	}
	return lp.fast
}

// addWatch starts polling w on every tick. Loop.
func (lp *loop) addWatch(w watcher) {
	lp.watch = append(lp.watch, w)
	if lp.watching.Swap(int32(len(lp.watch))) == 0 {
		lp.e.wakeTicker()
	}
}

// tick runs on the loop: it polls watchers and, on a sweep, enforces
// deadlines and expires idle upstream connections.
func (lp *loop) tick(sweep bool) {
	lp.queued.Store(false)
	lp.ticks.Add(1)
	now := nanotime()
	if len(lp.watch) > 0 {
		list := lp.watch
		lp.watch = nil // what a poll adds lands here
		keep := list[:0]
		for _, w := range list {
			if w.poll(now) {
				keep = append(keep, w)
			}
		}
		clear(list[len(keep):])
		for _, w := range lp.watch {
			if !slices.Contains(keep, w) {
				keep = append(keep, w)
			}
		}
		lp.watch = keep
		lp.watching.Store(int32(len(keep)))
	}
	if !sweep {
		return
	}
	lp.serveWaiters() // prunes waitQ
	lp.dialQ.prune(stConnecting)
	for s := lp.sessions.next; s != &lp.sessions; {
		next := s.next
		if s.deadline != 0 && now >= s.deadline {
			s.expired(now)
		}
		s = next
	}
	for i, stack := range lp.idle {
		keep := stack[:0]
		for _, up := range stack {
			if now-up.idleAt >= lp.e.upIdleTO {
				up.discard()
				continue
			}
			keep = append(keep, up)
		}
		for j := len(keep); j < len(stack); j++ {
			stack[j] = nil
		}
		lp.idle[i] = keep
		lp.e.met.IdleConns[i].Add(int64(len(keep) - len(stack)))
	}
}

// takeIdle pops the most recently used idle connection to backend i, or
// returns nil. Loop.
func (lp *loop) takeIdle(i int) *upconn {
	st := lp.idle[i]
	if len(st) == 0 {
		return nil
	}
	up := st[len(st)-1]
	st[len(st)-1] = nil
	lp.idle[i] = st[:len(st)-1]
	lp.e.met.IdleConns[i].Add(-1)
	up.idle = false
	// It waited in the pool, used or not (a dial that finished after
	// its client left): a close before the answer may be the keep-alive
	// race, not the backend failing.
	up.reused = true
	return up
}

// putIdle hands up to the oldest session waiting for a backend
// connection, or keeps it for reuse, or closes it if the pool is full or
// the engine drains. Loop.
func (lp *loop) putIdle(up *upconn) {
	if s := lp.nextWaiter(up.be.Index); s != nil {
		up.s = nil
		s.dequeued(up)
		return
	}
	i := up.be.Index
	if len(lp.idle[i]) >= lp.e.maxIdle || lp.e.draining.Load() {
		up.discard()
		return
	}
	up.s = nil
	up.idle = true
	up.idleAt = nanotime()
	lp.idle[i] = append(lp.idle[i], up)
	lp.e.met.IdleConns[i].Add(1)
}

// evictIdle closes the oldest idle connection of the backend with the
// most idle ones, to free a descriptor for a dial. Loop.
func (lp *loop) evictIdle() bool {
	best := -1
	for i := range lp.idle {
		if len(lp.idle[i]) > 0 && (best < 0 || len(lp.idle[i]) > len(lp.idle[best])) {
			best = i
		}
	}
	if best < 0 {
		return false
	}
	up := lp.idle[best][0]
	lp.dropIdle(up)
	up.kill()
	return true
}

// dropIdle removes up from its idle stack (it closed). Loop.
func (lp *loop) dropIdle(up *upconn) {
	st := lp.idle[up.be.Index]
	for j, u := range st {
		if u == up {
			copy(st[j:], st[j+1:])
			st[len(st)-1] = nil
			lp.idle[up.be.Index] = st[:len(st)-1]
			lp.e.met.IdleConns[up.be.Index].Add(-1)
			break
		}
	}
	up.idle = false
}

// drain closes idle keep-alive clients and idle upstream connections;
// busy sessions close after their current response. Loop.
func (lp *loop) drain() {
	for s := lp.sessions.next; s != &lp.sessions; {
		next := s.next
		s.drain()
		s = next
	}
	for i := range lp.idle {
		for _, up := range lp.idle[i] {
			up.discard()
		}
		lp.e.met.IdleConns[i].Add(-int64(len(lp.idle[i])))
		lp.idle[i] = lp.idle[i][:0]
	}
}

// abortAll ends every client connection at the drain deadline. One that
// is lingering after its last response closes as usual; any other has a
// response unfinished or unsent (or a request unanswered) and is reset,
// as when a backend dies mid-response (RFC 9112 section 6.3, item 8: a
// clean close would end a close-delimited body as if complete). Loop.
func (lp *loop) abortAll() {
	for s := lp.sessions.next; s != &lp.sessions; {
		next := s.next
		if s.st == stLinger {
			s.closeNow()
		} else {
			s.abort()
		}
		s = next
	}
}

// enter records c as the connection whose callback runs and returns the
// previous one, to restore after. Loop.
func (lp *loop) enter(c gnet.Conn) gnet.Conn {
	prev := lp.cur
	lp.cur = c
	return prev
}

// closeConn closes c. A connection whose own callback is running is
// closed by gnet after the callback returns (an async close: gnet still
// touches it when the callback ends); any other is closed at once, which
// saves waking the loop through its task queue. Loop.
func (lp *loop) closeConn(c gnet.Conn) {
	if c == lp.cur {
		_ = c.Close()
		return
	}
	_ = lp.el.Close(c)
}

// exec runs f on the loop. Any goroutine.
func (lp *loop) exec(f func()) {
	_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		return nil
	}))
}

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
