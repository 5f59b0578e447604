// Package metrics holds pace's Prometheus metrics: the
// http_requests_duration_seconds histogram (labels method and status, le
// buckets) and the pace_* counters and gauges for the proxy's internals,
// plus the [metrics] section of proxy.toml.
//
// Every metric is created once, by New, at start-up; the request path only
// updates them. Histograms for a (method, status) pair are registered the
// first time that pair is seen, under a mutex, and found afterwards with
// one atomic load, so no name is ever built per request.
//
// Concurrency: all methods are safe for concurrent use from any goroutine,
// including event loops. WritePrometheus takes short per-metric locks.
package metrics
