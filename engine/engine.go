package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"

	"github.com/pace-proxy/pace/codec"
	"github.com/pace-proxy/pace/metrics"
	"github.com/pace-proxy/pace/ratelimit"
	"github.com/pace-proxy/pace/upstream"
)

// Errors the engine logs; none reaches a caller.
var (
	// errUnaskedUpgrade is a backend switching protocols unasked.
	errUnaskedUpgrade = errors.New("101 Switching Protocols to a request that asked for no upgrade")
	// errWentDown is a dial not made: its backend was up when the
	// request picked it and was marked down while the dial waited for
	// a worker.
	errWentDown = errors.New("backend went down while the dial waited")
	// errEnrollLost is an Enroll whose result never came.
	errEnrollLost = errors.New("gnet lost the enroll (its worker panicked)")
	// errNoFDs is a dial that failed because pace itself is out of
	// descriptors (EMFILE, ENFILE): not the backend's fault.
	errNoFDs = errors.New("pace is out of file descriptors")
)

// Options are what New needs besides the [server] section.
type Options struct {
	Server    Config
	Upstreams upstream.Config
	RateLimit ratelimit.Config
	Metrics   metrics.Config
	Log       *slog.Logger
}

// Engine is a running (or ready to run) proxy.
type Engine struct {
	gnet.BuiltinEventEngine

	log          *slog.Logger
	bal          *upstream.Balancer
	lim          *ratelimit.Limiter // nil when rate limiting is off
	ext          *ratelimit.Extractor
	met          *metrics.Metrics
	limits       codec.Limits
	reqLimits    codec.Limits   // limits, and MaxBody for request bodies
	metrics      string         // endpoint path, "" when off
	metricsAllow []netip.Prefix // who may read the endpoint (TCP peer); nil means anyone
	deferAccept  int            // TCP_DEFER_ACCEPT seconds on the listeners; 0 off
	proxyHdr     []byte
	dropUnder    bool // drop request fields with '_' in their names
	retries      int
	access       *accessLog // nil when neither access_log nor debug
	listen       string
	workers      int
	maxConns     int64
	// maxConnsSet says max_connections came from the configuration.
	maxConnsSet bool
	bufLimit    int
	lowWater    int
	holdMax     int // input held from a peer that cannot be parked, at most
	headerTO    int64
	idleTO      int64
	sendTO      int64 // a client holding up its response must read within this
	respTO      int64
	retryTO     int64 // 0: none
	queueTO     int64 // how long a request waits for a free backend connection
	upIdleTO    int64
	maxIdle     int
	shutdownT   time.Duration

	mu       sync.Mutex
	loops    []*loop
	loopList atomic.Pointer[[]*loop] // e.loops, for readers on a loop (no lock)
	loopOf   sync.Map                // gnet.EventLoop -> *loop
	eng      gnet.Engine
	booted   chan struct{}
	bootOnce sync.Once

	wake     chan struct{}  // nudges the ticker when a loop starts watching
	dialq    []chan *upconn // per backend: dials for its dial pool
	draining atomic.Bool
	clients  atomic.Int64
	uplinks  atomic.Int64
	transit  atomic.Int64 // extra descriptors of enrolls in flight (see fdsInUse)
	logGates logGates
	asleep   atomic.Bool // the ticker sleeps until wake: no connection at all
	fdBudget int64

	xbackend [][]codec.Field // per backend: the X-Backend field
	hostHdr  []byte          // Host sent for HTTP/1.0 requests without one
}

// New builds an engine from validated sections.
func New(o Options) (*Engine, error) {
	for _, v := range []interface{ Validate() error }{&o.Server, &o.Upstreams, &o.RateLimit, &o.Metrics} {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{
		log:         log,
		bal:         upstream.NewBalancer(&o.Upstreams, log),
		proxyHdr:    []byte(o.Server.proxyHeader()),
		dropUnder:   !o.Server.UnderscoresInHeaders,
		retries:     o.Upstreams.Retries(),
		listen:      o.Server.listen(),
		workers:     o.Server.workers(),
		maxConns:    int64(o.Server.maxConns()),
		maxConnsSet: o.Server.MaxConnections != 0,
		bufLimit:    o.Server.BufferLimit.Or(256 << 10),
		headerTO:    int64(o.Server.headerTimeout()),
		idleTO:      int64(o.Server.idleTimeout()),
		sendTO:      int64(o.Server.sendTimeout()),
		respTO:      int64(o.Upstreams.ResponseTimeout.Or(30 * time.Second)),
		retryTO:     int64(o.Upstreams.RetryTimeout),
		queueTO:     int64(o.Upstreams.DialTimeout()),
		upIdleTO:    int64(o.Upstreams.IdleTimeout.Or(60 * time.Second)),
		maxIdle:     o.Upstreams.MaxIdle,
		shutdownT:   o.Server.shutdownTimeout(),
		booted:      make(chan struct{}),
		wake:        make(chan struct{}, 1),
	}
	if e.maxIdle == 0 {
		e.maxIdle = 1024
	}
	e.lowWater = e.bufLimit / 4
	e.holdMax = 2*e.bufLimit + readBufferCap
	e.limits = codec.Limits{
		MaxTarget: o.Server.MaxURISize.Or(8 << 10),
		MaxHead:   o.Server.MaxHeaderSize.Or(64 << 10),
		MaxFields: o.Server.MaxHeaderFields,
	}
	if o.Server.DeferredAccept {
		e.deferAccept = 1 // as nginx's "deferred" and HAProxy's "defer-accept" set it
	}
	e.reqLimits = e.limits
	e.reqLimits.MaxBody = int64(o.Server.MaxBodySize)
	if o.Metrics.On() {
		e.metrics = o.Metrics.Path()
		e.metricsAllow = o.Metrics.AllowList()
	}
	if o.RateLimit.Enabled == nil || *o.RateLimit.Enabled {
		lim, err := ratelimit.New(o.RateLimit, nil)
		if err != nil {
			return nil, err
		}
		e.lim = lim
	}
	ext, err := ratelimit.NewExtractor(o.RateLimit)
	if err != nil {
		return nil, err
	}
	e.ext = ext
	names := make([]string, len(e.bal.Backends))
	for i, b := range e.bal.Backends {
		names[i] = b.Addr
	}
	var keys, full func() float64
	if e.lim != nil {
		keys = func() float64 { return float64(e.lim.Keys()) }
		full = func() float64 { return float64(e.lim.Dropped()) }
	}
	e.met = metrics.New(names, keys, full)
	e.bal.OnState = func(b *upstream.Backend, up bool) {
		v := int32(0)
		if up {
			v = 1
		}
		e.met.BackendUp[b.Index].Store(v)
	}
	if o.Server.AccessLog || log.Enabled(context.Background(), slog.LevelDebug) {
		e.access = newAccessLog(log, o.Server.AccessLog)
	}
	for _, b := range e.bal.Backends {
		e.xbackend = append(e.xbackend, []codec.Field{{Name: []byte("X-Backend"), Value: []byte(b.Addr)}})
	}
	e.hostHdr = []byte(e.listen)
	if e.fdBudget, err = fdBudget(e); err != nil {
		return nil, err
	}
	if testFDBudget > 0 {
		e.fdBudget = testFDBudget
	}
	e.startDialers()
	return e, nil
}

// testFDBudget, when set by a test before New, replaces the descriptor
// budget, so that running out of descriptors can be tested without
// exhausting the test process's own.
var testFDBudget int64

// fdBudget raises the soft open-file limit to the hard one and lowers
// max_connections so that accept does not fail with EMFILE: the loop would
// stop accepting for 100 ms (third_party/gnet; stock gnet stopped the
// whole engine, closing every connection). Each client may hold one upstream
// connection; idle pooled connections give way (evictIdle) when a dial
// needs their descriptor, and a request that finds none waits for a busy
// connection to finish (session.enqueue). A reserve covers listeners,
// logs and accepts in flight. A limit that leaves no room for one client and its
// backend connection is an error: pace would start and then make every
// request wait for a descriptor.
func fdBudget(e *Engine) (int64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 30, nil
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	limit := int64(rl.Cur)
	reserve := int64(64 + 5*e.workers)
	avail := limit - reserve
	if avail < 2 {
		return 0, fmt.Errorf("open-file limit %d is too low for %d workers: pace needs at least %d (ulimit -n, or LimitNOFILE in systemd)", limit, e.workers, reserve+2)
	}
	if m := avail / 2; m < e.maxConns {
		// A warning when the operator asked for more; the default
		// (10,000) is only a ceiling, and meeting the limit is routine.
		lvl := slog.LevelInfo
		if e.maxConnsSet {
			lvl = slog.LevelWarn
		}
		e.log.Log(context.Background(), lvl, "max_connections lowered to fit the open-file limit", "max_connections", m, "requested", e.maxConns, "nofile", limit)
		e.maxConns = m
	}
	return avail, nil
}

// fdsInUse counts the descriptors the budget covers: clients, backend
// connections, and one more for each enroll in flight, because gnet's
// Enroll duplicates the descriptor it is given and closes the original
// only after registering the copy. Without that, a burst of dials ran pace out of descriptors
// (EMFILE) though the budget said there were some. Any.
func (e *Engine) fdsInUse() int64 {
	return e.clients.Load() + e.uplinks.Load() + e.transit.Load()
}

// idle reports that pace holds no connection: nothing has a deadline. Any.
func (e *Engine) idle() bool { return e.fdsInUse() == 0 }

// CheckListen binds the listen address once without SO_REUSEPORT and
// lets it go, so that pace refuses to start when another process holds
// the port (each worker's own listener sets SO_REUSEPORT, which would let
// a second pace silently share the port). Any goroutine.
func (e *Engine) CheckListen() error { return CheckListen(e.listen) }

// CheckListen is Engine.CheckListen for addr, for a configuration not yet
// running (pace -check). An address in use is an error that matches
// syscall.EADDRINUSE. Any goroutine.
func CheckListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w (another pace, or another server, holds it)", err)
		}
		return err
	}
	return l.Close()
}

// Workers is the number of event loops.
func (e *Engine) Workers() int { return e.workers }

// Addr is the configured listen address.
func (e *Engine) Addr() string { return e.listen }

// Run serves until Shutdown or a fatal error. It blocks. If the gnet
// engine stops by itself (not through Shutdown), Run logs it and starts
// it again, so that one failure cannot take the proxy down. If gnet
// cannot start (a socket cannot be bound), Run returns the error.
func (e *Engine) Run() error {
	for {
		err := gnet.Run(e, "tcp://"+e.listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(e.workers),
			gnet.WithReusePort(true),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(readBufferCap),
			gnet.WithLogger(gnetLogger{e.log}),
			gnet.WithTCPDeferAccept(e.deferAccept),
		)
		if e.draining.Load() {
			return nil
		}
		// gnet returns an error only when it could not start: binding a
		// socket or starting a worker failed. Sockets it bound before the
		// failure stay open (gnet does not close them), so starting again
		// in this process would leave them listening with no loop to
		// accept from them. A stop after a good start returns nil.
		if err != nil {
			return fmt.Errorf("listen %s: %w", e.listen, err)
		}
		e.log.Error("event engine stopped unexpectedly; restarting")
		e.mu.Lock()
		e.loops = nil
		e.loopList.Store(nil)
		e.mu.Unlock()
		e.loopOf = sync.Map{}
		time.Sleep(100 * time.Millisecond)
	}
}

// Ready is closed once the engine listens.
func (e *Engine) Ready() <-chan struct{} { return e.booted }

// OnBoot implements gnet.EventHandler.
func (e *Engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.mu.Lock()
	e.eng = eng
	e.mu.Unlock()
	e.bootOnce.Do(func() {
		close(e.booted)
		go e.ticker()
	})
	return gnet.None
}

// Shutdown drains: new connections are refused, idle keep-alive clients
// are closed, busy ones finish their request and get Connection: close.
// It returns once no client connection is left or ctx expires, then stops
// the event loops. Any goroutine.
func (e *Engine) Shutdown(ctx context.Context) error {
	if e.draining.Swap(true) {
		return nil
	}
	e.log.Info("draining", "clients", e.clients.Load(), "timeout", e.shutdownT)
	e.mu.Lock()
	eng := e.eng
	e.mu.Unlock()
	// New connections are refused by the kernel, as nginx and HAProxy
	// refuse them by closing their listeners: a client can retry that
	// safely elsewhere, where one accepted and closed cannot tell whether
	// its request was taken. Those accepted before are closed in OnOpen.
	// A drain that begins as gnet starts finds its loops not there yet
	// (OnBoot comes first): the close is tried again on every tick.
	listening := eng.CloseListeners() != nil
	e.each(func(lp *loop) { lp.drain() })
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var err error
	tries := 0
wait:
	for e.clients.Load() > 0 {
		if listening {
			if cerr := eng.CloseListeners(); cerr == nil {
				listening = false
			} else if tries++; tries == 50 {
				e.log.Warn("draining: cannot close the listening sockets; new connections are accepted and closed", "err", cerr)
			}
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			e.log.Warn("shutdown timeout: closing remaining connections", "clients", e.clients.Load())
			// gnet's Stop would close them with a FIN, and a client
			// would take a cut close-delimited response for a whole one.
			e.eachWait(func(lp *loop) { lp.abortAll() }, time.Second)
			break wait
		case <-t.C:
			e.each(func(lp *loop) { lp.drain() })
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := eng.Stop(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = serr
	}
	if e.access != nil {
		e.access.close()
	}
	return err
}

// ShutdownTimeout is the configured drain bound.
func (e *Engine) ShutdownTimeout() time.Duration { return e.shutdownT }

// each runs f on every loop, on that loop. Any goroutine.
func (e *Engine) each(f func(lp *loop)) {
	e.mu.Lock()
	loops := append([]*loop(nil), e.loops...)
	e.mu.Unlock()
	for _, lp := range loops {
		lp := lp
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(lp)
			return nil
		}))
	}
}

// eachWait is each, waiting up to d for f to have run on every loop. Any
// goroutine but a loop.
func (e *Engine) eachWait(f func(lp *loop), d time.Duration) {
	e.mu.Lock()
	loops := append([]*loop(nil), e.loops...)
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, lp := range loops {
		lp := lp
		wg.Add(1)
		if lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			f(lp)
			return nil
		})) != nil {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// loopFor returns the state of c's event loop, creating it on first use.
// Loop.
func (e *Engine) loopFor(c gnet.Conn) *loop {
	el := c.EventLoop()
	if v, ok := e.loopOf.Load(el); ok {
		return v.(*loop)
	}
	lp := newLoop(e, el)
	e.loopOf.Store(el, lp)
	e.mu.Lock()
	e.loops = append(e.loops, lp)
	list := e.loops[:len(e.loops):len(e.loops)] // later appends copy
	e.loopList.Store(&list)
	e.mu.Unlock()
	return lp
}

// keySweepEvery and keySweepSlots pace the rate limiter's background
// sweep: 1024 slots per shard a second, a few microseconds under each
// shard's lock, goes round a full table of a million keys in 16 s.
const (
	keySweepEvery = time.Second
	keySweepSlots = 1024
)

// wakeTicker signals the ticker (wake holds one signal, so the send fails
// only when one is pending), and lets it run before the calling loop
// blocks (netpoll.HandOff). Loop.
func (e *Engine) wakeTicker() {
	select {
	case e.wake <- struct{}{}:
		netpoll.HandOff()
	default:
	}
}

// ticker drives each loop's timers: a sweep for deadlines every 100ms,
// and a check every 2ms while some loop has parked, stalled or flushing
// connections. When no loop has any, it sleeps until the next sweep or
// until wake is signalled, so an idle or steadily busy proxy is not woken
// 500 times a second for nothing; with no connection at all it sleeps
// until wake alone (OnOpen sends one for the first client), or until the
// rate limiter's next sweep while it still tracks keys.
func (e *Engine) ticker() {
	const fast, slow = 2 * time.Millisecond, 100 * time.Millisecond
	t := time.NewTimer(slow)
	defer t.Stop()
	nextSweep := time.Now().Add(slow)
	nextKeys := time.Now().Add(keySweepEvery)
	for {
		select {
		case <-t.C:
		case <-e.wake:
		}
		e.asleep.Store(false)
		now := time.Now()
		sweep := !now.Before(nextSweep)
		if sweep {
			nextSweep = now.Add(slow)
		}
		if e.lim != nil && !now.Before(nextKeys) {
			// Release the rate limiter's expired keys even where no
			// request comes to sweep them, so that pace_ratelimit_keys
			// and the memory follow the clients that are left.
			nextKeys = now.Add(keySweepEvery)
			e.lim.Sweep(keySweepSlots)
		}
		e.mu.Lock()
		loops := e.loops
		e.mu.Unlock()
		busy := false
		for _, lp := range loops {
			w := lp.watching.Load() > 0
			busy = busy || w
			if !sweep && !w {
				continue
			}
			if lp.queued.Swap(true) {
				continue
			}
			_ = lp.el.Execute(context.Background(), lp.tickFn(sweep))
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if !busy && e.idle() {
			// Nothing has a deadline: sleep until OnOpen's wake for the
			// first client, so that an idle pace costs no CPU at all.
			// asleep is set before idle is checked again, and OnOpen
			// counts its client before it reads asleep: one of the two
			// sees the other.
			e.asleep.Store(true)
			if e.idle() {
				if e.lim != nil && e.lim.Keys() > 0 {
					t.Reset(time.Until(nextKeys)) // keys left to release
				}
				continue
			}
			e.asleep.Store(false)
		}
		d := time.Until(nextSweep)
		if busy && d > fast {
			d = fast
		}
		t.Reset(d)
	}
}

// OnOpen implements gnet.EventHandler. Loop.
func (e *Engine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch v := c.Context().(type) {
	case *upconn:
		prev := v.lp.enter(c)
		v.opened(c)
		v.lp.cur = prev
		return nil, gnet.None
	}
	e.met.ClientAccepted.Inc()
	// Take the slot before checking it: loops accept concurrently, and a
	// check-then-add let two of them pass at max_connections-1.
	if e.draining.Load() {
		e.met.ClientRejected.Inc()
		return nil, gnet.Close
	}
	n := e.clients.Add(1)
	if n > e.maxConns {
		e.clients.Add(-1)
		e.met.ClientRejected.Inc()
		// As nginx's "worker_connections are not enough"; the log gate
		// keeps a flood to a few lines a second.
		e.logf(levelWarn, "connection closed: max_connections reached", "max_connections", e.maxConns)
		return nil, gnet.Close
	}
	if n == 1 && e.asleep.Swap(false) {
		e.wakeTicker() // it sleeps with nothing to time
	}
	lp := e.loopFor(c)
	lp.newSession(c)
	return nil, gnet.None
}

// OnClose implements gnet.EventHandler. Loop.
func (e *Engine) OnClose(c gnet.Conn, err error) gnet.Action {
	switch v := c.Context().(type) {
	case *session:
		if v.cl.c == c {
			prev := v.lp.enter(c)
			v.closed(err)
			v.lp.cur = prev
		}
	case *upconn:
		if v.c == c {
			prev := v.lp.enter(c)
			v.closed(c, err)
			v.lp.cur = prev
		}
	}
	return gnet.None
}

// OnTraffic implements gnet.EventHandler. Loop.
func (e *Engine) OnTraffic(c gnet.Conn) gnet.Action {
	switch v := c.Context().(type) {
	case *session:
		prev := v.lp.enter(c)
		act := v.onClientData(c)
		v.lp.cur = prev
		return act
	case *upconn:
		prev := v.lp.enter(c)
		act := v.onData(c)
		v.lp.cur = prev
		return act
	}
	return gnet.Close
}

// gnetLogger routes gnet's own log lines into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any) {
	msg := "gnet: " + fmt.Sprintf(f, a...)
	if strings.Contains(msg, "stale connection") { // events racing a close; harmless
		g.l.Debug(msg)
		return
	}
	g.l.Warn(msg)
}
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
