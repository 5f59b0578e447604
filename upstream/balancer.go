package upstream

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Backend is one configured backend. Its counters are updated by every
// event loop with atomics.
type Backend struct {
	// Index is the backend's position in the configuration.
	Index int
	// Addr is the dialable "host:port"; it is also the X-Backend value.
	Addr string

	fails     atomic.Int32 // consecutive failures
	downUntil atomic.Int64 // unix nanoseconds; 0 when up
}

// Up reports whether the backend is currently taking traffic: it is not
// down, or its cool-down has passed (it then takes one probe request at a
// time, see take).
func (b *Backend) Up(now int64) bool {
	d := b.downUntil.Load()
	return d == 0 || now >= d
}

// Down reports whether the backend is marked down, cool-down passed or
// not: a dial for a request that picked it while it was up is then
// skipped, and the request picks again (and may take the probe).
func (b *Backend) Down() bool { return b.downUntil.Load() != 0 }

// take reports whether b may take a request now: it is up, or its
// cool-down has passed and this caller wins the probe. The probe pushes
// the cool-down on, so that until its outcome (Success brings b back,
// Failure starts a new cool-down) other requests keep going elsewhere:
// one request per cool-down finds out whether b is back, as one per
// fail_timeout does in nginx. Letting every request through instead sent a
// hung backend its whole share until the first of them timed out.
func (b *Backend) take(now int64, cooldown time.Duration) bool {
	d := b.downUntil.Load()
	if d == 0 {
		return true
	}
	return now >= d && b.downUntil.CompareAndSwap(d, now+int64(cooldown))
}

// Balancer picks backends round robin, globally across event loops.
type Balancer struct {
	Backends []*Backend

	next      atomic.Uint64
	threshold int32
	cooldown  time.Duration
	dialer    net.Dialer
	log       *slog.Logger
	// OnState, if set, is called when a backend goes down (up=false) or
	// comes back (up=true). It may be called on an event loop.
	OnState func(b *Backend, up bool)
}

// NewBalancer builds a Balancer from a validated Config.
func NewBalancer(c *Config, log *slog.Logger) *Balancer {
	bl := &Balancer{
		threshold: int32(c.FailThreshold),
		cooldown:  c.Cooldown.Or(10 * time.Second),
		log:       log,
	}
	if bl.threshold == 0 {
		bl.threshold = 3
	}
	bl.dialer.Timeout = c.connectTimeout()
	bl.dialer.KeepAlive = 30 * time.Second
	for i, s := range c.Backends {
		addr, _ := ParseBackend(s)
		bl.Backends = append(bl.Backends, &Backend{Index: i, Addr: addr})
	}
	return bl
}

// Pick returns the next backend in round-robin order that is up and not in
// the exclude bit set (bit i = backend i already tried). If every
// remaining backend is down it returns the next one not excluded anyway,
// so that a request is never refused only because all backends recently
// failed. It returns nil when every backend is excluded. Lock-free.
func (bl *Balancer) Pick(exclude uint64, now int64) *Backend {
	b, passed, _ := bl.scan(bl.next.Add(1)-1, exclude, now)
	if passed > 0 {
		// Skip the turns of the backends passed over, or the next one
		// up would take them all.
		bl.next.Add(passed)
	}
	return b
}

// Retry returns the backend to retry on after a failed attempt: the
// first one up and not excluded, scanning from the next round-robin turn;
// nil when none is (all tried, or the rest down). Unlike Pick it does not
// fall back on a down backend: the request already had its attempt, and
// when every backend is failing a second one would double the load on
// them and the client's wait (nginx answers "no live upstreams"). Unlike
// Pick it also leaves the turn where it is: a retry that took a turn
// would hand the next request's to the backend after it, so that with two
// backends one that fails every request would be tried first by every
// request. Starting from the turn (not from the failed backend) spreads
// the retries of a failing backend over the others. Lock-free.
func (bl *Balancer) Retry(exclude uint64, now int64) *Backend {
	b, _, up := bl.scan(bl.next.Load(), exclude, now)
	if !up {
		return nil
	}
	return b
}

// scan returns the first backend from position start on that is not
// excluded and may take a request (take: up, or its probe), with how many
// positions it passed over and true; else (all down) the first one not
// excluded, 0 and false; nil when every one is excluded.
func (bl *Balancer) scan(start, exclude uint64, now int64) (*Backend, uint64, bool) {
	n := uint64(len(bl.Backends))
	var fallback *Backend
	for i := uint64(0); i < n; i++ {
		b := bl.Backends[(start+i)%n]
		if exclude&(1<<uint(b.Index)) != 0 {
			continue
		}
		if b.take(now, bl.cooldown) {
			return b, i, true
		}
		if fallback == nil {
			fallback = b
		}
	}
	return fallback, 0, false
}

// Success records a good exchange with b: its failure streak ends, and a
// backend that was down is up again.
func (bl *Balancer) Success(b *Backend) {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
	if b.downUntil.Load() != 0 && b.downUntil.Swap(0) != 0 {
		bl.log.Warn("backend up", "backend", b.Addr)
		if bl.OnState != nil {
			bl.OnState(b, true)
		}
	}
}

// Failure records a connect failure or timeout, or a connection the
// backend closed before answering. After threshold failures
// in a row the backend is skipped for the cool-down; a request that then
// reaches it again (after the cool-down) and succeeds brings it back.
func (bl *Balancer) Failure(b *Backend, now int64) {
	f := b.fails.Add(1)
	if f < bl.threshold {
		return
	}
	wasUp := b.downUntil.Load() == 0
	b.downUntil.Store(now + int64(bl.cooldown))
	if wasUp {
		bl.log.Warn("backend down", "backend", b.Addr, "consecutive_failures", f, "cooldown", bl.cooldown)
		if bl.OnState != nil {
			bl.OnState(b, false)
		}
	}
}

// Dial connects to b with the configured connect timeout. It blocks: never
// call it on an event loop.
func (bl *Balancer) Dial(ctx context.Context, b *Backend) (net.Conn, error) {
	c, err := bl.dialer.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}
