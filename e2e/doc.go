// Package e2e is pace's reliability suite: it builds the real binary, starts
// it on ephemeral 127.0.0.1 ports with generated configs, and drives it with
// raw TCP clients against a recording backend that captures, byte for byte,
// everything pace forwards.
//
// The package holds no production code; everything lives in _test.go files:
//
//   - the hostile-request corpus in testdata/smuggle/*.txt (request
//     smuggling, desync, malformed framing, oversized heads, bad versions),
//     replayed concurrently from several clients with distinct markers;
//   - backend misbehaviour (garbage status lines, conflicting framing,
//     truncated bodies, bodies on 204/304/HEAD, 1xx floods, huge heads);
//   - faults under load (a backend killed and restarted, SIGTERM during
//     traffic);
//   - the stress suite behind the "stress" build tag (slowloris, connection
//     and fd exhaustion, slow readers of large bodies, a two-million-request
//     soak).
//
// The fast part runs with "go test ./e2e/"; the stress part with
//
//	go test -tags stress -run Stress -timeout 30m ./e2e/
//
// Environment:
//
//   - PACE_E2E_BIN: use this pace binary instead of building one.
//   - PACE_E2E_STANDIN=nginx: drive nginx instead of pace, to validate the
//     harness itself while pace does not build; pace-specific expectations
//     then fail where nginx behaves differently, by design.
//
// Concurrency: tests that start their own pace and backends run in parallel
// (t.Parallel); each owns its processes and ports. The recording backend is
// safe for concurrent use; its records are guarded by a mutex.
package e2e
