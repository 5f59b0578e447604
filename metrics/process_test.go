package metrics

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// The Go runtime and process metrics are rendered at most once per
// processEvery, however often the endpoint is asked; pace's own metrics
// are fresh on every scrape.
func TestProcessMetricsReused(t *testing.T) {
	now, calls := int64(1e12), 0
	defer func(n func() int64, w func(io.Writer)) { processNow, writeProcess = n, w }(processNow, writeProcess)
	processNow = func() int64 { return now }
	writeProcess = func(w io.Writer) {
		calls++
		fmt.Fprintf(w, "process_fake %d\n", calls)
	}
	m := New([]string{"b"}, nil, nil)
	scrape := func() string {
		var b bytes.Buffer
		m.WritePrometheus(&b)
		return b.String()
	}
	first := scrape()
	m.Retries.Inc()
	now += processEvery - 1
	second := scrape()
	if calls != 1 || !strings.Contains(second, "process_fake 1\n") {
		t.Errorf("scrape within processEvery rendered the process metrics %d times, want 1:\n%s", calls, second)
	}
	if !strings.Contains(first, "pace_retries_total 0\n") || !strings.Contains(second, "pace_retries_total 1\n") {
		t.Errorf("pace's own metrics must be fresh on each scrape: first has 0 %v, second has 1 %v",
			strings.Contains(first, "pace_retries_total 0\n"), strings.Contains(second, "pace_retries_total 1\n"))
	}
	now++
	if third := scrape(); calls != 2 || !strings.Contains(third, "process_fake 2\n") {
		t.Errorf("scrape after processEvery: %d renderings, want 2", calls)
	}
	now -= 10 * processEvery // the clock went back: render again
	if scrape(); calls != 3 {
		t.Errorf("scrape after the clock went back: %d renderings, want 3", calls)
	}
}
