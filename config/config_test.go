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
}
