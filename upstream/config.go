package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pace-proxy/pace/config"
)

// Sentinel errors.
var (
	ErrNoBackends = errors.New("upstreams.backends: at least one backend is required")
	ErrBadBackend = errors.New("bad backend")
)

// Config is the [upstreams] section of proxy.toml.
type Config struct {
	// Backends lists the backends as "http://host:port" (or "host:port").
	// Required; https is not supported yet.
	Backends []string `toml:"backends"`
	// MaxRetries is how many times a failed request is retried on another
	// backend. Nil means 1; 0 disables failover.
	MaxRetries *int `toml:"max_retries"`
	// ConnectTimeout bounds a backend dial. Zero means 2s.
	ConnectTimeout config.Duration `toml:"connect_timeout"`
	// ResponseTimeout bounds the wait for the first byte of a response
	// head after the request was sent, and each later stall while a
	// response is in progress. Zero means 30s; on expiry the client gets
	// 504 (if nothing was sent yet).
	ResponseTimeout config.Duration `toml:"response_timeout"`
	// RetryTimeout bounds the time, from the request head's arrival,
	// within which a failed request may still go to another backend:
	// once it has passed, the failure is the client's answer (nginx's
	// proxy_next_upstream_timeout). Zero means no bound: each attempt
	// has its own connect and response timeouts.
	RetryTimeout config.Duration `toml:"retry_timeout"`
	// IdleTimeout closes idle pooled keep-alive connections. Zero means 60s.
	IdleTimeout config.Duration `toml:"idle_timeout"`
	// MaxIdle is the number of idle keep-alive connections kept per
	// backend per worker. Zero means 1024: under high concurrency a small
	// pool closes and redials connections all the time (at 1000 client
	// connections, 64 cost 12x more dials and 45% of the throughput).
	MaxIdle int `toml:"max_idle"`
	// FailThreshold is the number of consecutive failures (a connect
	// refused or timed out, or a connection closed before a response
	// head) after which a backend is skipped. Zero means 3.
	FailThreshold int `toml:"fail_threshold"`
	// Cooldown is how long a failed backend is skipped. Zero means 10s.
	Cooldown config.Duration `toml:"cooldown"`
}

// Retries returns MaxRetries with its default applied.
func (c *Config) Retries() int {
	if c.MaxRetries == nil {
		return 1
	}
	return *c.MaxRetries
}

// Validate checks the section and reports the first problem with its key.
func (c *Config) Validate() error {
	if len(c.Backends) == 0 {
		return ErrNoBackends
	}
	if len(c.Backends) > 64 {
		return fmt.Errorf("upstreams.backends: at most 64 backends, got %d", len(c.Backends))
	}
	seen := map[string]bool{}
	for i, b := range c.Backends {
		addr, err := ParseBackend(b)
		if err != nil {
			return fmt.Errorf("upstreams.backends[%d]: %w", i, err)
		}
		if seen[addr] {
			return fmt.Errorf("upstreams.backends[%d]: %q listed twice", i, b)
		}
		seen[addr] = true
	}
	if c.MaxRetries != nil && (*c.MaxRetries < 0 || *c.MaxRetries > 16) {
		return fmt.Errorf("upstreams.max_retries: must be between 0 and 16, got %d", *c.MaxRetries)
	}
	if c.MaxIdle < 0 {
		return fmt.Errorf("upstreams.max_idle: must be >= 0, got %d", c.MaxIdle)
	}
	if c.FailThreshold < 0 {
		return fmt.Errorf("upstreams.fail_threshold: must be >= 0, got %d", c.FailThreshold)
	}
	return config.CheckTimeouts("upstreams", []string{"connect_timeout", "response_timeout", "retry_timeout", "idle_timeout", "cooldown"},
		c.ConnectTimeout, c.ResponseTimeout, c.RetryTimeout, c.IdleTimeout, c.Cooldown)
}

// ParseBackend turns "http://host:port", "http://host" or "host:port" into
// a dialable "host:port".
func ParseBackend(s string) (string, error) {
	raw := s
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if u.Scheme != "http" {
			return "", fmt.Errorf("%w %q: scheme %q not supported (use http://)", ErrBadBackend, raw, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", fmt.Errorf("%w %q: only scheme, host and port are allowed", ErrBadBackend, raw)
		}
		s = u.Host
		if u.Port() == "" {
			s = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", fmt.Errorf("%w %q: want http://host:port", ErrBadBackend, raw)
	}
	if !validHost(host) {
		return "", fmt.Errorf("%w %q: %q is neither an IP address nor a host name", ErrBadBackend, raw, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || port[0] == '+' {
		return "", fmt.Errorf("%w %q: bad port", ErrBadBackend, raw)
	}
	// The port as a plain number: "0080" is the same backend as "80"
	// (for the duplicate check and the metric label).
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// validHost reports whether h is an IP address or a DNS host name (RFC 1123
// labels of letters, digits, '-' and '_'), so that a stray "//" or space is
// an error at start-up, not a failed lookup on every request.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (c *Config) connectTimeout() time.Duration { return c.ConnectTimeout.Or(2 * time.Second) }

// DialTimeout is ConnectTimeout with its default applied.
func (c *Config) DialTimeout() time.Duration { return c.connectTimeout() }
