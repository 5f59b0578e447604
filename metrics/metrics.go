package metrics

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	vm "github.com/VictoriaMetrics/metrics"
)

// Config is the [metrics] section of proxy.toml.
type Config struct {
	// Enabled turns the endpoint on. Nil means true.
	Enabled *bool `toml:"enabled"`
	// Endpoint is the path pace answers itself with the exposition, on
	// the proxy port. Empty means "/metrics".
	Endpoint string `toml:"endpoint"`
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
	// Requests match the path alone (a query is ignored), so a query or
	// a byte no request-target may carry would never be served.
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= ' ' || b >= 0x7f || b == '?' || b == '#' {
			return fmt.Errorf("metrics.endpoint: a path without query, spaces or control bytes, got %q", p)
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
	numErrKinds
)

var errKindNames = [numErrKinds]string{"connect", "timeout", "bad_response", "closed"}

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
		s.NewGauge("pace_ratelimit_full_rejections", overflow)
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
	m.set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}
