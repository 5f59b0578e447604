package engine

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"
)

const (
	levelDebug = slog.LevelDebug
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
)

// accessLog writes request lines and the engine's per-event log lines
// from its own goroutine, so an event loop never blocks on a slow log
// writer. When the queue is full, lines are dropped and counted.
type accessLog struct {
	log     *slog.Logger
	always  bool // access_log = true: request lines at info
	ch      chan logEntry
	quit    chan struct{} // closed by close: run writes what is queued, then returns
	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.Mutex
	dropped int
}

type logEntry struct {
	level slog.Level
	msg   string
	buf   *bytebufferpool.ByteBuffer // a pre-formatted request line
	attrs []any
}

func newAccessLog(log *slog.Logger, always bool) *accessLog {
	a := &accessLog{log: log, always: always, ch: make(chan logEntry, 4096), quit: make(chan struct{})}
	a.wg.Add(1)
	go a.run()
	return a
}

func (a *accessLog) run() {
	defer a.wg.Done()
	for {
		select {
		case en := <-a.ch:
			a.write(en)
		case <-a.quit:
			for {
				select {
				case en := <-a.ch:
					a.write(en)
				default:
					return
				}
			}
		}
	}
}

func (a *accessLog) write(en logEntry) {
	if en.buf != nil {
		lvl := slog.LevelDebug
		if a.always {
			lvl = slog.LevelInfo
		}
		a.log.Log(context.Background(), lvl, "request", "line", string(en.buf.B))
		bytebufferpool.Put(en.buf)
		return
	}
	a.log.Log(context.Background(), en.level, en.msg, en.attrs...)
}

func (a *accessLog) send(en logEntry) {
	select {
	case a.ch <- en:
	default:
		a.mu.Lock()
		a.dropped++
		a.mu.Unlock()
		if en.buf != nil {
			bytebufferpool.Put(en.buf)
		}
	}
}

// request queues one access line: client method target status backend
// duration bytes. Loop.
func (a *accessLog) request(s *session) {
	b := bytebufferpool.Get()
	b.B = append(b.B, s.ip...)
	b.B = append(b.B, ' ')
	if s.method == len(methodsBytes)-1 {
		b.B = append(b.B, "OTHER"...)
	} else {
		b.B = append(b.B, methodsBytes[s.method]...)
	}
	b.B = append(b.B, ' ')
	b.B = append(b.B, s.target...)
	b.B = append(b.B, ' ')
	b.B = strconv.AppendInt(b.B, int64(s.status), 10)
	b.B = append(b.B, ' ')
	if s.be != nil {
		// Like nginx's $upstream_addr: each backend tried, in order,
		// but joined without spaces so that the line keeps its fields.
		for _, i := range s.via[:s.nvia] {
			b.B = append(b.B, s.lp.e.bal.Backends[i].Addr...)
			b.B = append(b.B, ',')
		}
		b.B = append(b.B, s.be.Addr...)
	} else {
		b.B = append(b.B, '-')
	}
	b.B = append(b.B, ' ')
	b.B = strconv.AppendFloat(b.B, float64(nanotime()-s.start)/1e6, 'f', 3, 64)
	b.B = append(b.B, "ms "...)
	b.B = strconv.AppendInt(b.B, s.bytesOut, 10)
	a.send(logEntry{buf: b})
}

// close stops the writer once it has written what is queued (for a
// second at most). The channel stays open: a dial goroutine may still log
// after this, and its line is then dropped instead of panicking. Any.
func (a *accessLog) close() {
	a.once.Do(func() {
		close(a.quit)
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	})
}

// logf logs an event line without blocking the loop when the async
// writer is on; otherwise directly (only at enabled levels). Any.
func (e *Engine) logf(level slog.Level, msg string, attrs ...any) {
	if !e.log.Enabled(context.Background(), level) {
		return
	}
	if level > levelDebug {
		now := nanotime()
		n, ok := e.logGates.pass(msg, now)
		if !ok {
			// Report the count after the second even if no line with
			// msg comes again to carry it.
			e.logGates.later(msg, now, func(n int64) { e.reportSuppressed(level, msg, n) })
			return
		}
		if n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
	}
	if e.access != nil && !e.draining.Load() {
		// The line is formatted later on the log goroutine: byte slices
		// (a client address, say) may be reused by then, so copy them.
		for i, a := range attrs {
			if b, ok := a.([]byte); ok {
				attrs[i] = string(b)
			}
		}
		e.access.send(logEntry{level: level, msg: msg, attrs: attrs})
		return
	}
	e.log.Log(context.Background(), level, msg, attrs...)
}

// reportSuppressed logs that n lines with message msg were held back. The
// message goes in "of": a second "msg" key would make log parsers, which
// keep the last, take the report for one more line of msg. Any.
func (e *Engine) reportSuppressed(level slog.Level, msg string, n int64) {
	e.log.Log(context.Background(), level, "log lines suppressed", "of", msg, "count", n)
}

// logBurst is how many lines with the same message logf writes in one
// second; the rest are counted and the count rides on the next line that
// goes out ("suppressed"), or, if none comes by the end of the second, on a
// line of its own ("log lines suppressed", of=msg). Clients sending bad requests, or every request
// failing while the backends are down, then cannot flood the log. Debug
// lines are never held back.
const logBurst = 10

// logGates holds one gate per message. Any goroutine.
type logGates struct{ m sync.Map } // msg -> *logGate

type logGate struct {
	sec        atomic.Int64
	n          atomic.Int64
	suppressed atomic.Int64
	pending    atomic.Bool // a report is scheduled (later)
}

// pass reports whether a line with msg may be written at now
// (nanoseconds), and how many lines with msg were held back before it.
func (g *logGates) pass(msg string, now int64) (suppressed int64, ok bool) {
	v, found := g.m.Load(msg)
	if !found {
		v, _ = g.m.LoadOrStore(msg, new(logGate))
	}
	gate := v.(*logGate)
	sec := now / 1e9
	if old := gate.sec.Load(); old != sec && gate.sec.CompareAndSwap(old, sec) {
		gate.n.Store(0)
	}
	if gate.n.Add(1) > logBurst {
		gate.suppressed.Add(1)
		return 0, false
	}
	return gate.suppressed.Swap(0), true
}

// later calls report, once the second of now (nanoseconds) is over, with
// the count of msg's lines held back and not yet reported, if any. One
// report is pending per message at a time. Any goroutine; report runs on
// a timer's goroutine.
func (g *logGates) later(msg string, now int64, report func(n int64)) {
	v, ok := g.m.Load(msg)
	if !ok {
		return
	}
	gate := v.(*logGate)
	if !gate.pending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Duration(1e9-now%1e9)+time.Millisecond, func() {
		gate.pending.Store(false)
		if n := gate.suppressed.Swap(0); n > 0 {
			report(n)
		}
	})
}
