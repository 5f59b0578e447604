package engine

import (
	"strings"
	"testing"

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
