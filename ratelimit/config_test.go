package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{Config{}, ""},
		{Config{MaxRequests: 10, WindowSeconds: 60, KeyExtractor: "client_ip", MaxKeys: 100, Shards: 64}, ""},
		{Config{KeyExtractor: "header:X-API-Key"}, ""},
		{Config{TrustedProxies: []string{"10.0.0.0/8", "::1", "192.168.0.1", "2001:db8::/32", "::ffff:10.0.0.0/104", "10.1.2.3/8"}}, ""},
		{Config{MaxRequests: -1}, "rate_limit.max_requests: must be > 0 (0 means the default, 10), got -1"},
		{Config{MaxRequests: MaxMaxRequests + 1}, "rate_limit.max_requests: must be <="},
		{Config{WindowSeconds: -5}, "rate_limit.window_seconds: must be > 0 (0 means the default, 60), got -5"},
		{Config{WindowSeconds: MaxWindowSeconds + 1}, "rate_limit.window_seconds: must be <= 604800"},
		{Config{KeyExtractor: "cookie"}, `rate_limit.key_extractor: must be "client_ip" or "header:NAME", got "cookie"`},
		{Config{KeyExtractor: "header:"}, "rate_limit.key_extractor: header name"},
		{Config{KeyExtractor: "header:X API"}, "rate_limit.key_extractor: header name"},
		{Config{KeyExtractor: "header:X-Forwarded-For"}, "rate_limit.key_extractor: X-Forwarded-For is written by the client"},
		{Config{KeyExtractor: "header:x-real-ip"}, "rate_limit.key_extractor: x-real-ip is written by the client"},
		{Config{KeyExtractor: "header:Forwarded"}, "rate_limit.key_extractor: Forwarded is written by the client"},
		{Config{TrustedProxies: []string{"10.0.0.0/33"}}, "rate_limit.trusted_proxies[0]: bad CIDR"},
		{Config{TrustedProxies: []string{"10.0.0.0/8", "nginx"}}, "rate_limit.trusted_proxies[1]: bad address"},
		{Config{TrustedProxies: []string{"fe80::1%eth0"}}, "rate_limit.trusted_proxies[0]: bad address"},
		{Config{TrustedProxies: []string{"::ffff:0:0/95"}}, "rate_limit.trusted_proxies[0]: bad CIDR"},
		{Config{RealIPHeader: "X-Real-IP"}, ""},
		{Config{RealIPHeader: "x-forwarded-for"}, ""},
		{Config{RealIPHeader: "Forwarded"}, `rate_limit.real_ip_header: must be "X-Forwarded-For" or "X-Real-IP", got "Forwarded"`},
		{Config{MaxKeys: -1}, "rate_limit.max_keys: must be > 0, got -1"},
		{Config{Shards: -2}, "rate_limit.shards: must be > 0, got -2"},
		{Config{Shards: 24}, "rate_limit.shards: must be a power of two, got 24"},
		{Config{Shards: 1 << 17}, "rate_limit.shards: must be <="},
		{Config{Shards: 16, MaxKeys: 8}, "rate_limit.shards: must be <= max_keys (8), got 16"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		case err != nil && !errors.Is(err, ErrInvalidConfig):
			t.Errorf("Validate(%+v) = %v, want errors.Is(err, ErrInvalidConfig)", tc.cfg, err)
		}
		if tc.want != "" {
			if _, err := New(tc.cfg, nil); err == nil {
				t.Errorf("New(%+v) = nil error, want %q", tc.cfg, tc.want)
			}
			if _, err := NewExtractor(tc.cfg); err == nil {
				t.Errorf("NewExtractor(%+v) = nil error, want %q", tc.cfg, tc.want)
			}
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := (&Config{MaxRequests: -1, Shards: 3}).Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "max_requests") || !strings.Contains(err.Error(), "shards") {
		t.Errorf("Validate() = %v, want both max_requests and shards reported as *ConfigError", err)
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if !c.IsEnabled() || c.MaxRequests != 10 || c.WindowSeconds != 60 || c.KeyExtractor != "client_ip" || c.MaxKeys != 1_000_000 {
		t.Errorf("Config{}.WithDefaults() = %+v, want enabled 10/60 client_ip 1e6 keys", c)
	}
	if c.Shards < 16 || c.Shards&(c.Shards-1) != 0 {
		t.Errorf("default shards = %d, want a power of two >= 16", c.Shards)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	off := false
	if c := (Config{Enabled: &off}).WithDefaults(); c.IsEnabled() {
		t.Errorf("WithDefaults turned enabled=false on")
	}
}

func TestDefaultShards(t *testing.T) {
	tests := []struct{ procs, maxKeys, want int }{
		{1, 1_000_000, 16},
		{2, 1_000_000, 32},
		{3, 1_000_000, 64},
		{8, 1_000_000, 128},
		{2, 20, 16},
		{2, 1, 1},
		{0, 1_000_000, 1},
		{10000, 1 << 30, MaxShards},
	}
	for _, tc := range tests {
		if got := DefaultShards(tc.procs, tc.maxKeys); got != tc.want {
			t.Errorf("DefaultShards(%d, %d) = %d, want %d", tc.procs, tc.maxKeys, got, tc.want)
		}
	}
}

func TestPolicyAndHeaders(t *testing.T) {
	l, _ := newTest(t, Config{MaxRequests: 10, WindowSeconds: 60})
	if got, want := l.Policy(), `"default";q=10;w=60`; got != want {
		t.Errorf("Policy() = %s, want %s", got, want)
	}
	tests := []struct {
		d    Decision
		want string
	}{
		{Decision{Allowed: true, Limit: 10, Remaining: 9, Reset: 60 * time.Second},
			"RateLimit-Policy: \"default\";q=10;w=60\r\nRateLimit: \"default\";r=9;t=60\r\n"},
		{Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 59500 * time.Millisecond},
			"RateLimit-Policy: \"default\";q=10;w=60\r\nRateLimit: \"default\";r=0;t=60\r\n"},
		{Decision{Limit: 10, RetryAfter: 6001 * time.Millisecond, Reset: 42 * time.Second},
			"RateLimit-Policy: \"default\";q=10;w=60\r\nRateLimit: \"default\";r=0;t=42\r\nRetry-After: 7\r\n"},
		{Decision{Limit: 10, RetryAfter: time.Millisecond, Reset: time.Millisecond},
			"RateLimit-Policy: \"default\";q=10;w=60\r\nRateLimit: \"default\";r=0;t=1\r\nRetry-After: 1\r\n"},
	}
	for _, tc := range tests {
		if got := string(l.AppendHeaders([]byte("X: y\r\n"), tc.d)); got != "X: y\r\n"+tc.want {
			t.Errorf("AppendHeaders(%+v) = %q, want %q", tc.d, got, "X: y\r\n"+tc.want)
		}
	}
	buf := make([]byte, 0, 256)
	d := Decision{Limit: 10, RetryAfter: 7 * time.Second, Reset: 42 * time.Second}
	if allocs := testing.AllocsPerRun(1000, func() { buf = l.AppendHeaders(buf[:0], d) }); allocs != 0 {
		t.Errorf("AppendHeaders allocs = %v, want 0", allocs)
	}
}
