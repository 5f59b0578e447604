package metrics

import "testing"

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
	} {
		c := Config{Endpoint: tc.endpoint}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(endpoint %q) = %v, want ok %v", tc.endpoint, err, tc.ok)
		}
	}
}
