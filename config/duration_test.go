package config

import (
	"testing"
	"time"
)

// go-toml hands a TOML integer to a Duration as nanoseconds unless the
// type decodes the raw value: `header_timeout = 10` must be 10 s, as the
// README says, and a negative duration is an error.
func TestDurationTOMLForms(t *testing.T) {
	type section struct {
		D Duration `toml:"d"`
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"d = 10", 10 * time.Second, true},
		{`d = "10"`, 10 * time.Second, true},
		{`d = "250ms"`, 250 * time.Millisecond, true},
		{`d = '1m30s'`, 90 * time.Second, true},
		{"d = -5", 0, false},
		{`d = "-5"`, 0, false},
		{`d = "-5s"`, 0, false},
		{"d = 9223372037", 0, false}, // seconds that overflow a time.Duration
	} {
		var v struct {
			S section `toml:"s"`
		}
		err := Decode([]byte("[s]\n"+tc.in+"\n"), &v)
		if (err == nil) != tc.ok || (tc.ok && time.Duration(v.S.D) != tc.want) {
			t.Errorf("Decode(%q) = %v, %v; want %v, ok %v", tc.in, time.Duration(v.S.D), err, tc.want, tc.ok)
		}
	}
}
