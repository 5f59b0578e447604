package config

import (
	"errors"
	"strings"
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

// A refused duration names its key, as go-toml's own errors do.
func TestDurationErrorNamesKey(t *testing.T) {
	var v struct {
		A struct {
			X Duration `toml:"x"`
		} `toml:"a"`
		B struct {
			Y Duration `toml:"y"`
		} `toml:"b"`
	}
	for _, tc := range []struct{ in, key string }{
		{"[a]\nx = \"1s\"\n[b]\ny = \"-1s\"\n", "b.y"},
		{"[a]\nx = 1.5\n", "a.x"},
		{"[a]\nx = \"ten\"\n", "a.x"},
	} {
		err := Decode([]byte(tc.in), &v)
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") || !errors.Is(err, ErrBadDuration) {
			t.Errorf("Decode(%q) = %v, want an ErrBadDuration starting %q", tc.in, err, tc.key+": ")
		}
	}
}
