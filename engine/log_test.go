package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A message logs at most logBurst lines a second; the count of the lines
// held back goes out with the next line that passes.
func TestLogGates(t *testing.T) {
	var g logGates
	const sec = int64(1e9)
	passed := 0
	for i := 0; i < 100; i++ {
		if n, ok := g.pass("backend connect failed", 5*sec+int64(i)); ok {
			passed++
			if n != 0 {
				t.Fatalf("line %d: suppressed = %d, want 0 in the first second", i, n)
			}
		}
	}
	if passed != logBurst {
		t.Fatalf("%d of 100 lines passed in one second, want %d", passed, logBurst)
	}
	if _, ok := g.pass("bad request", 5*sec+200); !ok {
		t.Fatal("another message was held back by the first one's gate")
	}
	n, ok := g.pass("backend connect failed", 6*sec)
	if !ok || n != 100-logBurst {
		t.Fatalf("next second: pass = %d, %v; want %d, true", n, ok, 100-logBurst)
	}
	if n, ok := g.pass("backend connect failed", 6*sec+1); !ok || n != 0 {
		t.Fatalf("after the report: pass = %d, %v; want 0, true", n, ok)
	}
}

func TestRequestLineGuess(t *testing.T) {
	for _, tc := range []struct{ in, method, target string }{
		{"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET", "/x"},
		{"POST /a?b=c HTTP/1.1\r\n", "POST", "/a?b=c"},
		{"GET /x", "GET", "/x"},
		{"GET /\x00x HTTP/1.1\r\n", "GET", "-"},
		{"GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\n", "GET", "-"},
		{"\x16\x03\x01\x02\x00", "", "-"},
		{"NOSPACEATALL", "", "-"},
		{" /x HTTP/1.1\r\n", "", "-"},
	} {
		m, tg := requestLineGuess([]byte(tc.in))
		if string(m) != tc.method || string(tg) != tc.target {
			t.Errorf("requestLineGuess(%q) = %q, %q, want %q, %q", tc.in, m, tg, tc.method, tc.target)
		}
	}
}

// Lines held back in a burst that nothing follows are still counted: a
// report of their own comes once the second is over.
func TestLogGatesReportLater(t *testing.T) {
	var g logGates
	got := make(chan int64, 2)
	now := nanotime()
	for i := 0; i < 25; i++ {
		if _, ok := g.pass("bad request", now); !ok {
			g.later("bad request", now, func(n int64) { got <- n })
		}
	}
	select {
	case n := <-got:
		if n != 25-logBurst {
			t.Fatalf("reported %d suppressed lines, want %d", n, 25-logBurst)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no report of the suppressed lines")
	}
	select {
	case n := <-got:
		t.Fatalf("a second report (%d): want one per burst", n)
	case <-time.After(100 * time.Millisecond):
	}
}

// The report names the message in "of", not in a second "msg" key, which
// parsers would read as the report's own message.
func TestReportSuppressedRecord(t *testing.T) {
	var buf bytes.Buffer
	e := &Engine{log: slog.New(slog.NewTextHandler(&buf, nil))}
	e.reportSuppressed(slog.LevelWarn, "bad request", 490)
	got := strings.TrimSpace(buf.String())
	if !strings.HasSuffix(got, `level=WARN msg="log lines suppressed" of="bad request" count=490`) || strings.Count(got, "msg=") != 1 {
		t.Errorf("report = %q, want one msg and of=\"bad request\" count=490", got)
	}
}
