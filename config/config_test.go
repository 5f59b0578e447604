package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"10s", 10 * time.Second, false},
		{"250ms", 250 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"5", 5 * time.Second, false},
		{"-1s", 0, true},
		{"soon", 0, true},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.err || (err == nil && time.Duration(d) != tc.want) {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, err=%v", tc.in, time.Duration(d), err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadDuration) {
			t.Errorf("UnmarshalText(%q) error %v is not ErrBadDuration", tc.in, err)
		}
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"65536", 65536, false},
		{"256KiB", 256 << 10, false},
		{"4MiB", 4 << 20, false},
		{"1g", 1 << 30, false},
		{"-3", 0, true},
		{"lots", 0, true},
	} {
		var s Size
		err := s.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.err || (err == nil && int64(s) != tc.want) {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, err=%v", tc.in, s, err, tc.want, tc.err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	type sec struct {
		Listen  string   `toml:"listen"`
		Timeout Duration `toml:"timeout"`
	}
	type file struct {
		Server sec `toml:"server"`
	}
	var f file
	if err := Decode([]byte("[server]\nlisten = \"x\"\ntimeout = \"3s\"\n"), &f); err != nil {
		t.Fatal(err)
	}
	if f.Server.Listen != "x" || time.Duration(f.Server.Timeout) != 3*time.Second {
		t.Fatalf("decoded %+v", f)
	}
	err := Decode([]byte("[server]\nlisten = \"x\"\nlistn = \"y\"\n"), &f)
	if err == nil || !strings.Contains(err.Error(), "server.listn") {
		t.Fatalf("unknown key error = %v, want it to name server.listn", err)
	}
	err = Decode([]byte("[server]\ntimeout = \"forever\"\n"), &f)
	if err == nil || !strings.Contains(err.Error(), "bad duration") {
		t.Fatalf("bad duration error = %v", err)
	}
	// TOML keys are case-sensitive; go-toml matches fields regardless,
	// which let a second section in capitals override the first.
	for _, tc := range []struct{ in, want string }{
		{"[server]\nlisten = \"x\"\n[SERVER]\nlisten = \"y\"\n", `SERVER (line 3): keys are case-sensitive; this one is "server"`},
		{"[server]\nListen = \"x\"\n", `server.Listen (line 2): keys are case-sensitive; this one is "listen"`},
		{"# Listen here\n[server]\nListen = \"x\"\n", `server.Listen (line 3): keys are case-sensitive; this one is "listen"`},
	} {
		if err := Decode([]byte(tc.in), &file{}); err == nil || err.Error() != tc.want {
			t.Errorf("Decode(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// A value of the wrong type is reported in TOML's terms, with its line
// and key, not with go-toml's Go struct and type names; an unknown key
// with its line.
func TestDecodeErrorsReadable(t *testing.T) {
	type sec struct {
		N     int      `toml:"n"`
		On    bool     `toml:"on"`
		Name  string   `toml:"name"`
		List  []string `toml:"list"`
		Ratio float64  `toml:"ratio"`
		Size  Size     `toml:"size"`
	}
	type file struct {
		S sec `toml:"s"`
	}
	for _, tc := range []struct{ in, want string }{
		{"[s]\nn = \"60s\"\n", "line 2, column 5 (s.n): want an integer, got a string"},
		{"[s]\nn = 10.5\n", "(s.n): want an integer, got a number"},
		{"[s]\non = \"yes\"\n", "(s.on): want true or false, got a string"},
		{"[s]\nname = 3\n", "(s.name): want a string, got an integer"},
		{"[s]\nlist = \"a\"\n", "(s.list): want an array, got a string"},
		{"[s]\nratio = true\n", "(s.ratio): want a number, got true or false"},
		{"[s]\nsize = [1]\n", `(s.size): want an integer or a size such as "256KiB", got an array`},
		{"[s]\nn = 2026-01-01\n", "(s.n): want an integer, got a date"},
		{"[s]\nn = {a = 1}\n", "(s.n): want an integer, got a table"},
		{"[s]\n\nnn = 1\n", "unknown key(s): s.nn (line 3)"},
	} {
		var f file
		err := Decode([]byte(tc.in), &f)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "struct field") {
			t.Errorf("Decode(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
