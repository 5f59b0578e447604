package main

import (
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
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

// The event loops get one more P than there are loops, unless $GOMAXPROCS
// says otherwise, or Go chose fewer Ps than CPUs (a cgroup CPU limit); more
// Ps than that are lowered to it.
func TestSpareProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	for _, c := range []struct{ procs, ncpu, workers, want int }{
		{2, 2, 2, 3},
		{1, 1, 4, 5},
		{8, 8, 4, 5},
		{16, 16, 8, 9},
		{5, 8, 4, 5},
		{2, 16, 2, 2},  // a 2-CPU limit on a 16-CPU host
		{12, 16, 4, 5}, // a 12-CPU limit, 4 workers
	} {
		runtime.GOMAXPROCS(c.procs)
		if got := spareProc(c.workers, c.ncpu); got != c.want || runtime.GOMAXPROCS(0) != c.want {
			t.Errorf("GOMAXPROCS %d of %d CPUs: spareProc(%d) = %d, want %d", c.procs, c.ncpu, c.workers, got, c.want)
		}
	}
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	if got := spareProc(2, 2); got != 2 {
		t.Errorf("with $GOMAXPROCS=2: spareProc(2) = %d, want 2 (the operator's choice)", got)
	}
}

// PACE_LOG and -log-level take the names RUST_LOG users know, trace
// included (pace's most detailed level is debug).
func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
	}{{"", slog.LevelInfo}, {"trace", slog.LevelDebug}, {"DEBUG", slog.LevelDebug}, {"warning", slog.LevelWarn}, {"error", slog.LevelError}} {
		if got, err := parseLevel(tc.in); err != nil || got != tc.want {
			t.Errorf("parseLevel(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseLevel("verbose"); err == nil {
		t.Error(`parseLevel("verbose") succeeded, want an error`)
	}
}

func TestSelfBackend(t *testing.T) {
	tests := []struct {
		listen   string
		backends []string
		self     bool
	}{
		{"127.0.0.1:8080", []string{"http://127.0.0.1:8000", "127.0.0.1:8001"}, false},
		{"127.0.0.1:8080", []string{"http://127.0.0.1:8000", "http://127.0.0.1:8080"}, true},
		{"127.0.0.1:8080", []string{"localhost:8080"}, true},
		{"127.0.0.1:8080", []string{"127.0.0.2:8080"}, false}, // another address of lo
		{"", []string{"http://localhost:8080"}, true},
		{"0.0.0.0:8080", []string{"127.0.0.9:8080"}, true},
		{"[::]:8080", []string{"[::1]:8080"}, true},
		{"0.0.0.0:8080", []string{"127.0.0.1:8081"}, false},
		{"0.0.0.0:8080", []string{"backend.example:8080"}, false}, // names are not resolved
		{"192.0.2.1:8080", []string{"localhost:8080"}, false},
		{"0.0.0.0:8080", []string{"[::1]:8080"}, false}, // another family: another socket
		{"[::]:8080", []string{"127.0.0.1:8080"}, false},
		{":8080", []string{"[::1]:8080"}, true},
		{"localhost:8080", []string{"127.0.0.1:8080"}, true},
		{"localhost:8080", []string{"localhost:8080"}, true},
		{"127.0.0.1:08080", []string{"127.0.0.1:8080"}, true},
	}
	for _, tt := range tests {
		err := selfBackend(tt.listen, tt.backends)
		if (err != nil) != tt.self {
			t.Errorf("selfBackend(%q, %q) = %v, want self %v", tt.listen, tt.backends, err, tt.self)
		}
	}
}

func TestUnresolvedBackends(t *testing.T) {
	// .invalid never resolves (RFC 6761 section 6.4); without a resolver
	// the lookup fails or times out, and is reported either way.
	got := unresolvedBackends([]string{"http://127.0.0.1:8000", "http://localhost:8001", "http://pace-test.invalid:8002"}, 2*time.Second)
	if len(got) != 1 || !strings.Contains(got[0], "pace-test.invalid:8002") {
		t.Fatalf("unresolvedBackends = %q, want one warning, for pace-test.invalid", got)
	}
}
