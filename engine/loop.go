package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
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
		select {
		case lp.e.wake <- struct{}{}:
		default:
		}
	}
}

// tick runs on the loop: it polls watchers and, on a sweep, enforces
// deadlines and expires idle upstream connections.
func (lp *loop) tick(sweep bool) {
	lp.queued.Store(false)
	now := nanotime()
	if len(lp.watch) > 0 {
		keep := lp.watch[:0]
		for _, w := range lp.watch {
			if w.poll(now) {
				keep = append(keep, w)
			}
		}
		for i := len(keep); i < len(lp.watch); i++ {
			lp.watch[i] = nil
		}
		lp.watch = keep
		lp.watching.Store(int32(len(keep)))
	}
	if !sweep {
		return
	}
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
	return up
}

// putIdle keeps up for reuse, or closes it if the pool is full or the
// engine drains. Loop.
func (lp *loop) putIdle(up *upconn) {
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
