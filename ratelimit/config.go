package ratelimit

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"runtime"
	"strings"
)

// Defaults applied by [Config.WithDefaults] to zero-valued fields.
const (
	DefaultMaxRequests   = 10
	DefaultWindowSeconds = 60
	DefaultKeyExtractor  = "client_ip"
	DefaultMaxKeys       = 1_000_000
	DefaultIPv6Prefix    = 64

	// MaxWindowSeconds bounds window_seconds (one week). Timestamps are kept
	// as uint32 milliseconds compared modulo 2^32 (49.7 days); the bound keeps
	// every live age far below that (see doc.go, "Clock").
	MaxWindowSeconds = 7 * 24 * 3600
	// MaxMaxRequests bounds max_requests; per-bucket counters are uint32.
	MaxMaxRequests = 1 << 30
	// MaxShards bounds shards.
	MaxShards = 1 << 16

	// ExactLimit is the largest max_requests kept as an exact per-key log of
	// admission times; larger limits use the bucketed window (see doc.go).
	ExactLimit = 64

	headerPrefix = "header:"
)

// Config is the [rate_limit] section of proxy.toml.
//
// The zero Config is valid and means: enabled, 10 requests per 60 s per
// client IP (the TCP peer; no trusted proxies), at most 1,000,000 tracked
// keys, 16*GOMAXPROCS shards.
type Config struct {
	// Enabled switches limiting on or off. nil means true. When false, a
	// Limiter admits every request and AppendHeaders appends nothing.
	Enabled *bool `toml:"enabled"`
	// MaxRequests is how many requests one key may have admitted in any
	// trailing window. Zero means 10.
	MaxRequests int `toml:"max_requests"`
	// WindowSeconds is the length of the sliding window. Zero means 60.
	WindowSeconds int `toml:"window_seconds"`
	// KeyExtractor selects what a request is keyed by: "client_ip" (the
	// peer address, or the address derived through TrustedProxies) or
	// "header:NAME" (a 128-bit hash of the first NAME field value, falling
	// back to the client IP when the field is absent or empty). "" means
	// "client_ip".
	KeyExtractor string `toml:"key_extractor"`
	// TrustedProxies lists CIDR prefixes or bare IP addresses whose
	// X-Forwarded-For and X-Real-IP fields are believed. Empty (nil) means
	// no proxy is trusted: the key is always the TCP peer address.
	TrustedProxies []string `toml:"trusted_proxies"`
	// RealIPHeader says which field a trusted proxy names the client in,
	// as nginx's real_ip_header does: "X-Forwarded-For" walks that list
	// from the right and falls back to X-Real-IP (see
	// [Extractor.ClientIP]); "X-Real-IP" reads only X-Real-IP, for a
	// proxy that sets it and passes the client's own X-Forwarded-For on
	// untouched (nginx with only proxy_set_header X-Real-IP), where
	// X-Forwarded-For would be whatever the client wrote. Case does not
	// matter. "" means "X-Forwarded-For".
	RealIPHeader string `toml:"real_ip_header"`
	// IPv6Prefix is how many leading bits of an IPv6 client address make
	// its key, so that the clients of one such network share a limit.
	// Zero means 64: a /64 is the least a subscriber is given, and keyed
	// per address one client would hold 2^64 quotas. 128 keys each
	// address apart, as nginx's $binary_remote_addr does. IPv4 addresses
	// are always keyed whole.
	IPv6Prefix int `toml:"ipv6_prefix"`
	// MaxKeys caps the number of tracked keys (a shard holding none may
	// take one more, so at most MaxKeys + Shards). Zero means 1,000,000.
	MaxKeys int `toml:"max_keys"`
	// Shards is the number of independently locked shards; it must be a
	// power of two. Zero means the smallest power of two >= 16*GOMAXPROCS
	// (read when WithDefaults runs), halved until it is <= MaxKeys.
	Shards int `toml:"shards"`
}

// IsEnabled reports whether limiting is on (Enabled nil or true).
func (c *Config) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// WithDefaults returns a copy of c with every zero field replaced by its
// default. It does not validate.
func (c Config) WithDefaults() Config {
	if c.Enabled == nil {
		t := true
		c.Enabled = &t
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.WindowSeconds == 0 {
		c.WindowSeconds = DefaultWindowSeconds
	}
	if c.KeyExtractor == "" {
		c.KeyExtractor = DefaultKeyExtractor
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = DefaultIPv6Prefix
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards(runtime.GOMAXPROCS(0), c.MaxKeys)
	}
	return c
}

// DefaultShards is the shard count used when shards is zero: the smallest
// power of two >= 16*procs, halved while it exceeds maxKeys (so every shard
// may hold at least one key), and at least 1.
func DefaultShards(procs, maxKeys int) int {
	want := max(16*procs, 1)
	n := 1 << bits.Len(uint(want-1))
	for n > 1 && maxKeys > 0 && n > maxKeys {
		n >>= 1
	}
	return min(n, MaxShards)
}

// ConfigError is one invalid setting. Error() reads
// "rate_limit.<key>: <reason>"; it matches ErrInvalidConfig with errors.Is.
type ConfigError struct {
	Key    string // TOML key within [rate_limit], e.g. "max_requests"
	Reason string
}

func (e *ConfigError) Error() string { return "rate_limit." + e.Key + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// Validate checks c and returns nil or every problem found, joined with
// errors.Join, each a *ConfigError such as
// "rate_limit.max_requests: must be > 0, got -1". Zero values are valid
// (they mean defaults); Validate does not fill them in.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.MaxRequests < 0:
		bad("max_requests", "must be > 0 (0 means the default, %d), got %d", DefaultMaxRequests, c.MaxRequests)
	case c.MaxRequests > MaxMaxRequests:
		bad("max_requests", "must be <= %d, got %d", MaxMaxRequests, c.MaxRequests)
	}
	switch {
	case c.WindowSeconds < 0:
		bad("window_seconds", "must be > 0 (0 means the default, %d), got %d", DefaultWindowSeconds, c.WindowSeconds)
	case c.WindowSeconds > MaxWindowSeconds:
		bad("window_seconds", "must be <= %d (one week), got %d", MaxWindowSeconds, c.WindowSeconds)
	}
	if _, err := parseExtractor(c.KeyExtractor); err != nil {
		bad("key_extractor", "%v", err)
	}
	if _, err := parseRealIPHeader(c.RealIPHeader); err != nil {
		bad("real_ip_header", "%v", err)
	}
	for i, s := range c.TrustedProxies {
		if _, err := parseTrusted(s); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err)
		}
	}
	if c.MaxKeys < 0 {
		bad("max_keys", "must be > 0, got %d", c.MaxKeys)
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be from 1 to 128 (0 means the default, %d), got %d", DefaultIPv6Prefix, c.IPv6Prefix)
	}
	switch {
	case c.Shards < 0:
		bad("shards", "must be > 0, got %d", c.Shards)
	case c.Shards > MaxShards:
		bad("shards", "must be <= %d, got %d", MaxShards, c.Shards)
	case c.Shards > 0 && c.Shards&(c.Shards-1) != 0:
		bad("shards", "must be a power of two, got %d", c.Shards)
	case c.Shards > 0 && c.MaxKeys > 0 && c.Shards > c.MaxKeys:
		bad("shards", "must be <= max_keys (%d), got %d", c.MaxKeys, c.Shards)
	case c.Shards > 0 && c.MaxKeys == 0 && c.Shards > DefaultMaxKeys:
		bad("shards", "must be <= max_keys (%d), got %d", DefaultMaxKeys, c.Shards)
	}
	return errors.Join(errs...)
}

// parseExtractor returns the header name for "header:NAME", "" for
// "client_ip" (or "").
func parseExtractor(s string) (header string, err error) {
	switch {
	case s == "" || s == DefaultKeyExtractor:
		return "", nil
	case strings.HasPrefix(s, headerPrefix):
		name := s[len(headerPrefix):]
		if !isToken(name) {
			return "", fmt.Errorf("header name %q is not an RFC 9110 section 5.1 field name (token)", name)
		}
		switch strings.ToLower(name) {
		case "x-forwarded-for", "x-real-ip", "forwarded":
			// Any client sends whatever it likes there, a fresh value per
			// request to get a fresh quota each time.
			return "", fmt.Errorf("%s is written by the client unless a proxy replaces it, so every client could pick its own key: use %q with trusted_proxies, which reads it only from the proxies listed", name, DefaultKeyExtractor)
		}
		return name, nil
	}
	return "", fmt.Errorf("must be %q or %q, got %q", DefaultKeyExtractor, headerPrefix+"NAME", s)
}

// ClientField is the field a trusted proxy's client address is read from
// first, as real_ip_header names it: HeaderXForwardedFor (then
// HeaderXRealIP) or HeaderXRealIP. For a valid c.
func (c *Config) ClientField() string {
	if realIPOnly, _ := parseRealIPHeader(c.RealIPHeader); realIPOnly {
		return HeaderXRealIP
	}
	return HeaderXForwardedFor
}

// parseRealIPHeader reports whether real_ip_header s selects X-Real-IP only
// (false: X-Forwarded-For, then X-Real-IP).
func parseRealIPHeader(s string) (realIPOnly bool, err error) {
	switch {
	case s == "" || strings.EqualFold(s, HeaderXForwardedFor):
		return false, nil
	case strings.EqualFold(s, HeaderXRealIP):
		return true, nil
	}
	return false, fmt.Errorf("must be %q or %q, got %q", HeaderXForwardedFor, HeaderXRealIP, s)
}

// parseTrusted parses one trusted_proxies entry: a CIDR prefix (host bits
// are masked off) or a bare address (a single-host prefix). IPv4-mapped IPv6
// prefixes are turned into IPv4 prefixes because addresses are unmapped
// before matching.
func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: %v", s, err)
		}
		a := p.Addr()
		if a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("bad CIDR %q: IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %v", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// isToken reports whether s is an RFC 9110 section 5.6.2 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
