package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/valyala/bytebufferpool"
)

// Config is the [metrics] section of proxy.toml.
type Config struct {
	// Enabled turns the endpoint on. Nil means true.
	Enabled *bool `toml:"enabled"`
	// Endpoint is the path pace answers itself with the exposition, on
	// the proxy port. Empty means "/metrics".
	Endpoint string `toml:"endpoint"`
	// Allow lists the client addresses ("10.1.2.3", "::1") and prefixes
	// ("10.0.0.0/8") that may read the endpoint, matched against the
	// TCP peer; others get 403. Empty means every client may.
	Allow []string `toml:"allow"`
}

// AllowList returns Allow parsed, a single address as a one-address
// prefix, IPv4-mapped IPv6 as IPv4. Nil when Allow is empty. It assumes
// Validate passed.
func (c *Config) AllowList() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Allow {
		if p, err := parseAllow(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parseAllow(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zone %q: not supported", a.Zone())
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// On reports whether the endpoint is served.
func (c *Config) On() bool { return c.Enabled == nil || *c.Enabled }

// Path returns Endpoint with its default.
func (c *Config) Path() string {
	if c.Endpoint == "" {
		return "/metrics"
	}
	return c.Endpoint
}

// Validate checks the section.
func (c *Config) Validate() error {
	p := c.Path()
	if p[0] != '/' {
		return fmt.Errorf("metrics.endpoint: must start with '/', got %q", p)
	}
	if p == "/" {
		// Only that exact path would be pace's, but it is the site's
		// root page: surely a slip for "/metrics".
		return fmt.Errorf("metrics.endpoint: \"/\" would answer the site's root page with metrics; use a path such as \"/metrics\"")
	}
	// Requests match the path alone (a query is ignored), so a query or
	// a byte no request-target may carry would never be served.
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= ' ' || b >= 0x7f || b == '?' || b == '#' {
			return fmt.Errorf("metrics.endpoint: a path without query, spaces or control bytes, got %q", p)
		}
	}
	for i, a := range c.Allow {
		if _, err := parseAllow(a); err != nil {
			return fmt.Errorf("metrics.allow[%d]: want an address or prefix (\"10.0.0.0/8\", \"::1\"), got %q: %v", i, a, err)
		}
	}
	return nil
}

// Methods are the method label values; anything else is "OTHER".
var Methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"}

// MethodOther is the index of "OTHER" in Methods.
const MethodOther = len(Methods) - 1

// MethodIndex maps a request method to its index in Methods without
// allocating. Methods are case-sensitive (RFC 9110 section 9.1).
func MethodIndex(m []byte) int {
	for i := 0; i < MethodOther; i++ {
		if string(m) == Methods[i] {
			return i
		}
	}
	return MethodOther
}

// Buckets are the histogram's upper bounds in seconds.
var Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Upstream error kinds, the values of the kind label.
const (
	ErrConnect     = iota // dial failed or timed out
	ErrTimeout            // response timeout
	ErrBadResponse        // response head or framing rejected
	ErrClosed             // backend closed mid-exchange
	ErrStale              // a pooled connection closed as a request went out (the keep-alive race)
	numErrKinds
)

var errKindNames = [numErrKinds]string{"connect", "timeout", "bad_response", "closed", "stale"}

// Metrics is the set of pace's metrics.
type Metrics struct {
	set  *vm.Set
	mu   sync.Mutex
	hist [len(Methods)][600]atomic.Pointer[vm.PrometheusHistogram]

	// Counters and gauges updated by the engine.
	ClientConns       atomic.Int64 // open client connections (gauge)
	ClientAccepted    *vm.Counter
	ClientRejected    *vm.Counter // closed at once: over max_connections or draining
	RateLimited       *vm.Counter
	Retries           *vm.Counter
	BadRequests       *vm.Counter
	Parked            *vm.Counter // times a connection was paused for backpressure
	UpstreamDials     *vm.Counter
	UpstreamQueued    *vm.Counter // requests that waited for a backend connection to free up
	UpstreamRequests  []*vm.Counter
	upstreamErrors    [][numErrKinds]*vm.Counter
	BackendUp         []atomic.Int32
	IdleConns         []atomic.Int64
	rateLimitKeys     func() float64
	rateLimitOverflow func() float64
	fullDrops         *vm.Counter // set from rateLimitOverflow at each scrape
	process           atomic.Pointer[processSnapshot]
}

// processSnapshot is the Go runtime and process part of the exposition,
// rendered at most once per processEvery.
type processSnapshot struct {
	at int64 // nanotime when rendered
	b  []byte
}

// processEvery is how long a rendering of the Go runtime and process
// metrics is served again. Rendering reads /proc and cgroup files (about
// 0.4 ms, most of an exposition's cost) on the event loop that serves the
// scrape: no scraper asks more than once a second, and a client hammering
// the endpoint should not make pace read /proc for each request.
const processEvery = int64(time.Second)

// Hooks for tests: the clock and the process metrics writer.
var (
	processNow   = func() int64 { return time.Now().UnixNano() }
	writeProcess = vm.WriteProcessMetrics
)

// help is the # HELP text of each of pace's metric families. The
// metrics library writes HELP lines without text; WritePrometheus fills
// these in.
var help = map[string]string{
	"http_requests_duration_seconds":         "Time from a request head's arrival to the end of its response, by method and status sent (499: none was).",
	"pace_client_connections":                "Open client connections.",
	"pace_client_connections_accepted_total": "Client connections accepted.",
	"pace_client_connections_rejected_total": "Client connections closed at once: over max_connections, or while draining.",
	"pace_ratelimited_total":                 "Requests answered 429 by the rate limiter.",
	"pace_retries_total":                     "Attempts after a failed one (another backend, or a fresh connection after a stale pooled one).",
	"pace_bad_requests_total":                "Requests rejected as malformed.",
	"pace_backpressure_pauses_total":         "Times a connection was parked because its peer read too slowly.",
	"pace_upstream_dials_total":              "New backend connections made.",
	"pace_upstream_queued_total":             "Requests that waited for a busy backend connection because pace was out of file descriptors.",
	"pace_upstream_requests_total":           "Exchanges completed, by backend.",
	"pace_upstream_errors_total":             "Failed exchanges, by backend and kind (connect, timeout, bad_response, closed, stale).",
	"pace_backend_up":                        "1 while the backend is in rotation, 0 while it is skipped after failures.",
	"pace_upstream_idle_connections":         "Pooled idle backend connections, by backend.",
	"pace_ratelimit_keys":                    "Client keys the rate limiter tracks.",
	"pace_ratelimit_full_drops_total":        "Live client keys the limiter dropped, oldest first, to make room for new ones because its key table was full (max_keys).",
}

// New creates every metric for the given backends (their host:port names).
// keys and overflow report the limiter's tracked keys and how many new
// keys it refused because its table was full; either may be nil.
func New(backends []string, keys, overflow func() float64) *Metrics {
	vm.ExposeMetadata(true) // # TYPE lines, so parsers see one histogram family
	m := &Metrics{set: vm.NewSet()}
	s := m.set
	s.NewGauge("pace_client_connections", func() float64 { return float64(m.ClientConns.Load()) })
	m.ClientAccepted = s.NewCounter("pace_client_connections_accepted_total")
	m.ClientRejected = s.NewCounter("pace_client_connections_rejected_total")
	m.RateLimited = s.NewCounter("pace_ratelimited_total")
	m.Retries = s.NewCounter("pace_retries_total")
	m.BadRequests = s.NewCounter("pace_bad_requests_total")
	m.Parked = s.NewCounter("pace_backpressure_pauses_total")
	m.UpstreamDials = s.NewCounter("pace_upstream_dials_total")
	m.UpstreamQueued = s.NewCounter("pace_upstream_queued_total")
	m.BackendUp = make([]atomic.Int32, len(backends))
	m.IdleConns = make([]atomic.Int64, len(backends))
	m.upstreamErrors = make([][numErrKinds]*vm.Counter, len(backends))
	for i, b := range backends {
		i := i
		q := strconv.Quote(b)
		m.BackendUp[i].Store(1)
		m.UpstreamRequests = append(m.UpstreamRequests, s.NewCounter(`pace_upstream_requests_total{backend=`+q+`}`))
		for k := 0; k < numErrKinds; k++ {
			m.upstreamErrors[i][k] = s.NewCounter(`pace_upstream_errors_total{backend=` + q + `,kind="` + errKindNames[k] + `"}`)
		}
		s.NewGauge(`pace_backend_up{backend=`+q+`}`, func() float64 { return float64(m.BackendUp[i].Load()) })
		s.NewGauge(`pace_upstream_idle_connections{backend=`+q+`}`, func() float64 { return float64(m.IdleConns[i].Load()) })
	}
	if keys != nil {
		s.NewGauge("pace_ratelimit_keys", keys)
	}
	if overflow != nil {
		m.rateLimitOverflow = overflow
		m.fullDrops = s.NewCounter("pace_ratelimit_full_drops_total")
	}
	return m
}

// Observe records one finished request.
func (m *Metrics) Observe(method, status int, seconds float64) {
	if status < 100 || status > 599 {
		status = 599
	}
	if method < 0 || method >= len(Methods) {
		method = MethodOther
	}
	h := m.hist[method][status].Load()
	if h == nil {
		h = m.histogram(method, status)
	}
	h.Update(seconds)
}

// histogram registers the (method, status) histogram on first use.
func (m *Metrics) histogram(method, status int) *vm.PrometheusHistogram {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.hist[method][status].Load(); h != nil {
		return h
	}
	name := `http_requests_duration_seconds{method="` + Methods[method] + `",status="` + strconv.Itoa(status) + `"}`
	h := m.set.NewPrometheusHistogramExt(name, Buckets)
	m.hist[method][status].Store(h)
	return h
}

// UpstreamError counts one failed exchange with backend i.
func (m *Metrics) UpstreamError(i, kind int) { m.upstreamErrors[i][kind].Inc() }

// UpstreamErrors returns how many kind errors backend i has had. Any.
func (m *Metrics) UpstreamErrors(i, kind int) uint64 { return m.upstreamErrors[i][kind].Get() }

// WritePrometheus writes the exposition: pace's metrics, then the Go
// runtime and process metrics (go_goroutines, process_resident_memory_bytes...).
func (m *Metrics) WritePrometheus(w io.Writer) {
	if m.fullDrops != nil {
		m.fullDrops.Set(uint64(m.rateLimitOverflow()))
	}
	b := bytebufferpool.Get()
	defer bytebufferpool.Put(b)
	m.set.WritePrometheus(b)
	writeWithHelp(w, b.B)
	_, _ = w.Write(m.processMetrics())
}

// processMetrics returns the Go runtime and process metrics, rendered
// again once the last rendering is processEvery old. Two callers may both
// render; the later one's snapshot stays. No lock: event loops call it.
func (m *Metrics) processMetrics() []byte {
	now := processNow()
	if p := m.process.Load(); p != nil && now-p.at < processEvery && now >= p.at {
		return p.b
	}
	var b bytes.Buffer
	writeProcess(&b)
	m.process.Store(&processSnapshot{at: now, b: b.Bytes()})
	return b.Bytes()
}

// writeWithHelp copies an exposition to w, giving each empty # HELP line
// of pace's own families its text.
func writeWithHelp(w io.Writer, src []byte) {
	const prefix = "# HELP "
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line = src[:i+1]
		}
		src = src[len(line):]
		if name, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\n")), []byte(prefix)); ok {
			if text, ok := help[string(name)]; ok {
				io.WriteString(w, prefix)
				w.Write(name)
				io.WriteString(w, " "+text+"\n")
				continue
			}
		}
		w.Write(line)
	}
}
