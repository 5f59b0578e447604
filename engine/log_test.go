package engine

import "testing"

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
