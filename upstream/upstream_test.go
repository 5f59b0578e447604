package upstream

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pace-proxy/pace/config"
)

func intp(i int) *int { return &i }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"ok", Config{Backends: []string{"http://127.0.0.1:8000", "127.0.0.1:8001"}}, true},
		{"none", Config{}, false},
		{"https", Config{Backends: []string{"https://a:1"}}, false},
		{"path", Config{Backends: []string{"http://a:1/x"}}, false},
		{"noport", Config{Backends: []string{"a"}}, false},
		{"badport", Config{Backends: []string{"a:99999"}}, false},
		{"dup", Config{Backends: []string{"http://a:1", "a:1"}}, false},
		{"retries", Config{Backends: []string{"a:1"}, MaxRetries: intp(-1)}, false},
		{"connect_timeout 1ns", Config{Backends: []string{"a:1"}, ConnectTimeout: config.Duration(time.Nanosecond)}, false},
		{"response_timeout 1ms", Config{Backends: []string{"a:1"}, ResponseTimeout: config.Duration(time.Millisecond)}, true},
	} {
		err := tc.c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if got, _ := ParseBackend("http://example.com"); got != "example.com:80" {
		t.Errorf("ParseBackend(http://example.com) = %q", got)
	}
}

func TestParseBackend(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:8000", "127.0.0.1:8000"},
		{"http://127.0.0.1:0080", "127.0.0.1:80"},
		{"HTTP://[::1]:8000", "[::1]:8000"},
		{"backend_1.internal:9000", "backend_1.internal:9000"},
		{"example.com.:80", "example.com.:80"},
		{"//127.0.0.1:8000", ""},
		{" 127.0.0.1:8000", ""},
		{"a b:1", ""},
		{"-a:1", ""},
		{"a..b:1", ""},
		{"a:+80", ""},
	} {
		got, err := ParseBackend(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseBackend(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	// "0080" and "80" are one backend.
	if err := (&Config{Backends: []string{"http://a:0080", "a:80"}}).Validate(); err == nil {
		t.Error("Validate(a:0080, a:80) = nil, want a duplicate error")
	}
}

func TestPickRoundRobinAndDown(t *testing.T) {
	c := &Config{Backends: []string{"a:1", "b:2", "c:3"}, FailThreshold: 2}
	bl := NewBalancer(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now().UnixNano()
	var got []int
	for i := 0; i < 6; i++ {
		got = append(got, bl.Pick(0, now).Index)
	}
	want := []int{0, 1, 2, 0, 1, 2}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Pick sequence = %v, want %v", got, want)
		}
	}
	// b fails twice -> down, skipped.
	b := bl.Backends[1]
	bl.Failure(b, now)
	if !b.Up(now) {
		t.Fatal("down after one failure, threshold is 2")
	}
	bl.Failure(b, now)
	if b.Up(now) {
		t.Fatal("still up after two failures")
	}
	for i := 0; i < 10; i++ {
		if p := bl.Pick(0, now); p == b {
			t.Fatal("picked a down backend while others are up")
		}
	}
	// exclusion
	if p := bl.Pick(1<<0|1<<2, now); p != b {
		t.Fatalf("Pick with a and c excluded = %v, want the down b as fallback", p)
	}
	if p := bl.Pick(7, now); p != nil {
		t.Fatalf("Pick with all excluded = %v, want nil", p)
	}
	// cool-down passes; success brings it back.
	later := now + int64(11*time.Second)
	if !b.Up(later) {
		t.Fatal("not retried after cool-down")
	}
	bl.Success(b)
	if !b.Up(now) {
		t.Fatal("Success did not bring the backend back")
	}
}

// After its cool-down a down backend takes one probe request, not every
// request: the others keep going elsewhere until the probe's outcome. A
// failed probe starts a new cool-down (one probe each), a good one brings
// the backend back for everyone.
func TestCooldownProbeIsOneRequest(t *testing.T) {
	c := &Config{Backends: []string{"a:1", "b:2"}, FailThreshold: 1}
	bl := NewBalancer(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a := bl.Backends[0]
	now := time.Now().UnixNano()
	bl.Failure(a, now)
	count := func(at int64) int {
		n := 0
		for i := 0; i < 20; i++ {
			if bl.Pick(0, at) == a {
				n++
			}
		}
		return n
	}
	if n := count(now + int64(time.Second)); n != 0 {
		t.Fatalf("in its cool-down a took %d of 20 requests, want 0", n)
	}
	after := now + int64(11*time.Second)
	if n := count(after); n != 1 {
		t.Fatalf("after its cool-down a took %d of 20 requests, want 1 (the probe)", n)
	}
	if r := bl.Retry(1<<1, after); r != nil {
		t.Fatalf("Retry while the probe is out = %v, want nil (a is still down)", r)
	}
	bl.Failure(a, after) // the probe failed
	if n := count(after + int64(5*time.Second)); n != 0 {
		t.Fatalf("after a failed probe a took %d of 20 requests, want 0 (a new cool-down)", n)
	}
	later := after + int64(11*time.Second)
	if n := count(later); n != 1 {
		t.Fatalf("after the second cool-down a took %d of 20 requests, want 1", n)
	}
	bl.Success(a) // the probe succeeded
	if n := count(later); n != 10 {
		t.Fatalf("after a good probe a took %d of 20 requests, want 10 (its round-robin share)", n)
	}
}

func TestDialTimeoutAndRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &Config{Backends: []string{addr}, ConnectTimeout: 0}
	bl := NewBalancer(c, slog.Default())
	if _, err := bl.Dial(context.Background(), bl.Backends[0]); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

// With a backend down, the others share its turns evenly: the one after it
// in the list must not take them all.
func TestPickEvenWithBackendDown(t *testing.T) {
	bl := NewBalancer(&Config{Backends: []string{"a:1", "b:1", "c:1"}, FailThreshold: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	bl.Failure(bl.Backends[0], 1)
	n := map[string]int{}
	for i := 0; i < 300; i++ {
		n[bl.Pick(0, 2).Addr]++
	}
	if n["b:1"] != 150 || n["c:1"] != 150 {
		t.Fatalf("300 picks with a down: %v, want b:1 and c:1 150 each", n)
	}
}

// Retry scans from the next round-robin turn, skipping the tried and the
// down ones (with no fallback on a down one, unlike Pick), and does not
// take the turn.
func TestRetry(t *testing.T) {
	c := &Config{Backends: []string{"a:1", "b:2", "c:3", "d:4"}, FailThreshold: 1}
	bl := NewBalancer(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now().UnixNano()
	bl.Failure(bl.Backends[2], now) // c is down
	for _, tc := range []struct {
		turn    int // Pick calls before (the next turn is turn % 4)
		exclude uint64
		want    int // -1: nil
	}{
		{1, 1 << 0, 1},                     // a failed: the turn is b
		{2, 1 << 1, 3},                     // turn c, down: skipped
		{0, 1 << 0, 1},                     // turn a, tried: b
		{3, 1 << 3, 0},                     // wraps
		{1, 1<<1 | 1<<3 | 1<<0, -1},        // only the down c is left: no retry
		{0, 1<<0 | 1<<1 | 1<<2 | 1<<3, -1}, // all tried
	} {
		bl.next.Store(uint64(tc.turn))
		got := bl.Retry(tc.exclude, now)
		gi := -1
		if got != nil {
			gi = got.Index
		}
		if gi != tc.want {
			t.Errorf("turn %d: Retry(%04b) = %d, want %d", tc.turn, tc.exclude, gi, tc.want)
		}
		if bl.next.Load() != uint64(tc.turn) {
			t.Errorf("turn %d: Retry(%04b) moved the turn to %d", tc.turn, tc.exclude, bl.next.Load())
		}
	}
}
