package main

import (
	"os"
	"testing"
)

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

// Without -config, pace reads ./proxy.toml, or the original manual's
// config/proxy.toml when only that exists.
func TestConfigPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if got := configPath("proxy.toml"); got != "proxy.toml" {
		t.Errorf("no file: configPath = %q, want proxy.toml (its error names it)", got)
	}
	os.Mkdir("config", 0o755)
	os.WriteFile(manualConfig, nil, 0o644)
	if got := configPath("proxy.toml"); got != manualConfig {
		t.Errorf("only %s: configPath = %q", manualConfig, got)
	}
	os.WriteFile("proxy.toml", nil, 0o644)
	if got := configPath("proxy.toml"); got != "proxy.toml" {
		t.Errorf("both: configPath = %q, want proxy.toml", got)
	}
}
