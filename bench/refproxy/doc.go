// Command refproxy is the reference baseline of pace's load harness: the
// standard library's net/http/httputil.ReverseProxy configured to do the
// same work as pace, so bench/load.sh can compare the two side by side.
//
//	GOMAXPROCS=2 go run ./bench/refproxy -listen 127.0.0.1:8080 \
//	    -backends http://127.0.0.1:8000,http://127.0.0.1:8001
//
// Per request it picks the next backend round robin (one atomic counter
// shared by all connections), adds "X-Proxy: <-proxy-header>" and the
// X-Forwarded-For/-Host/-Proto fields on the way in (the client's address
// is appended to any X-Forwarded-For list already present, the de facto
// convention), and adds "X-Backend: <host:port>" on the way
// out. Upstream connections are kept alive by an http.Transport with a
// large MaxIdleConnsPerHost; copy buffers come from a sync.Pool. It does
// no rate limiting and no retries; a failed backend yields 502.
//
// Concurrency: every piece of state is either immutable after start-up or
// safe for concurrent use (the atomic round-robin counter, the Transport's
// pool, the buffer pool). The worker count is GOMAXPROCS. SIGINT or
// SIGTERM shuts the server down gracefully (five seconds at most).
package main
