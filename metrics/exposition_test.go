package metrics

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestExpositionParses(t *testing.T) {
	m := New([]string{"127.0.0.1:9001", "[::1]:9002"}, func() float64 { return 3 }, func() float64 { return 1 })
	m.Observe(0, 200, 0.003)
	m.Observe(0, 404, 0.2)
	m.Observe(2, 200, 20)
	m.Observe(MethodOther, 499, 0.0001)
	m.RateLimited.Inc()
	var b bytes.Buffer
	m.WritePrometheus(&b)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	h := fams["http_requests_duration_seconds"]
	if h == nil || h.GetType().String() != "HISTOGRAM" || len(h.Metric) != 4 {
		t.Fatalf("hist %v", h)
	}
	for _, mm := range h.Metric {
		if len(mm.Label) != 2 || len(mm.Histogram.Bucket) < len(Buckets) {
			t.Fatalf("metric %v", mm)
		}
	}
	// Every pace family says what it is, and the limiter's table-full
	// count is a counter, as its _total name says.
	for name, f := range fams {
		if _, ours := help[name]; (ours || name == "http_requests_duration_seconds") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP text", name)
		}
		if strings.HasPrefix(name, "pace_") {
			if _, ok := help[name]; !ok {
				t.Errorf("%s is missing from the help table", name)
			}
		}
	}
	if f := fams["pace_ratelimit_full_drops_total"]; f == nil || f.GetType().String() != "COUNTER" || f.Metric[0].GetCounter().GetValue() != 1 {
		t.Errorf("pace_ratelimit_full_drops_total = %v, want a counter at 1", f)
	}
	t.Log(b.String()[:1500])
}
