package metrics

import (
	"fmt"
	"testing"
)

func TestConfigValidateEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"", true},
		{"/metrics", true},
		{"/internal/prom-metrics", true},
		{"metrics", false},
		{"/metrics?x=1", false},
		{"/my metrics", false},
		{"/m#frag", false},
		{"/m\x7f", false},
		{"/", false},
	} {
		c := Config{Endpoint: tc.endpoint}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(endpoint %q) = %v, want ok %v", tc.endpoint, err, tc.ok)
		}
	}
}

func TestConfigAllow(t *testing.T) {
	for _, tc := range []struct {
		allow []string
		want  string // the parsed list, or "error"
	}{
		{nil, "[]"},
		{[]string{"127.0.0.1", "::1"}, "[127.0.0.1/32 ::1/128]"},
		{[]string{"10.1.2.3/8", "fd00::/8"}, "[10.0.0.0/8 fd00::/8]"},
		{[]string{"::ffff:10.0.0.1", "::ffff:10.0.0.0/104"}, "[10.0.0.1/32 10.0.0.0/8]"},
		{[]string{"10.0.0.0/33"}, "error"},
		{[]string{"localhost"}, "error"},
		{[]string{"fe80::1%eth0"}, "error"},
		{[]string{""}, "error"},
	} {
		c := Config{Allow: tc.allow}
		err := c.Validate()
		got := fmt.Sprint(c.AllowList())
		if err != nil {
			got = "error"
		}
		if got == "[]" && tc.want == "[]" {
			continue
		}
		if got != tc.want {
			t.Errorf("Config{Allow: %q}: AllowList() = %s (Validate: %v), want %s", tc.allow, got, err, tc.want)
		}
	}
}
