package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/pace-proxy/pace/config"
)

func TestConfigValidateListen(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   string // "" means valid
	}{
		{"", ""},
		{"127.0.0.1:8080", ""},
		{":8080", ""},
		{"localhost:8080", ""},
		{"[::1]:8080", ""},
		{"127.0.0.1", "not host:port"},
		{"0.0.0.0:99999", "from 1 to 65535"},
		{"127.0.0.1:0", "from 1 to 65535"},
		{"127.0.0.1:http", "from 1 to 65535"},
		{"nosuchhost.invalid:8080", "nosuchhost.invalid"},
	} {
		c := Config{Listen: tc.listen}
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(listen %q) = %v, want nil", tc.listen, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "server.listen")):
			t.Errorf("Validate(listen %q) = %v, want an error naming server.listen and %q", tc.listen, err, tc.want)
		}
	}
}

// A negative max_body_size (a bare TOML integer decodes without the size
// parser's check) must not pass as "no limit".
func TestConfigValidateMaxBodySize(t *testing.T) {
	for _, tc := range []struct {
		size int64
		ok   bool
	}{{0, true}, {1, true}, {1 << 40, true}, {-1, false}} {
		c := Config{Listen: "127.0.0.1:8080", MaxBodySize: config.Size(tc.size)}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(max_body_size %d) = %v, want ok %v", tc.size, err, tc.ok)
		}
	}
}

// Sizes and timeouts whose unit slipped: per-connection buffers in
// gigabytes, a head limit or field count no client needs, a timeout that
// fails every request.
func TestConfigValidateBounds(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string // "" means valid
	}{
		{Config{BufferLimit: 64 << 20, MaxHeaderSize: 1 << 20, MaxHeaderFields: 10000, SendTimeout: config.Duration(time.Millisecond)}, ""},
		{Config{BufferLimit: 100 << 30}, "server.buffer_limit: must be from 4096 bytes to 64 MiB"},
		{Config{BufferLimit: 1000}, "server.buffer_limit"},
		{Config{MaxHeaderSize: 100 << 30}, "server.max_header_size: must be from 1024 bytes to 1024 KiB"},
		{Config{MaxHeaderFields: 100000000}, "server.max_header_fields: must be at most 10000"},
		{Config{HeaderTimeout: config.Duration(time.Nanosecond)}, "server.header_timeout: must be at least 1ms"},
		{Config{ShutdownTimeout: config.Duration(999 * time.Microsecond)}, "server.shutdown_timeout"},
	} {
		tc.c.Listen = "127.0.0.1:8080"
		err := tc.c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
}
