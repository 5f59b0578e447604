package main

import "testing"

func TestRustLogLevel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"info", "info"},
		{"DEBUG", "debug"},
		{"trace", "debug"},
		{"off", "error"},
		{"warn,pace=debug", "debug"},
		{"pace=error,info", "error"},
		{"pace::proxy=debug", "debug"},
		{"hyper=debug", ""},
		{"info,hyper=debug", "info"},
		{"pingora", ""},
	} {
		if got := rustLogLevel(tc.in); got != tc.want {
			t.Errorf("rustLogLevel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
