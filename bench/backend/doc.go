// Command backend is the test HTTP/1.1 origin server used by pace's
// scripts, end-to-end tests and load harness (bench/load.sh).
//
//	go run ./bench/backend -listen 127.0.0.1:8000 -name backend1
//
// It is built to stay out of the way in load tests: the hot path (GET /)
// writes a precomputed prefix plus two echoed header values from a pooled
// buffer, allocates nothing in the handler and logs nothing per request.
//
// # Endpoints
//
// Every response carries the header "X-Backend-Name: <name>".
//
//	GET /            200, text/plain, exactly three lines:
//	                     hello from <name>
//	                     x-proxy: <X-Proxy received, or "-">
//	                     x-forwarded-for: <X-Forwarded-For received, or "-">
//	                 Several fields of one name are joined with ", "
//	                 (RFC 9110 section 5.3). Any path without a route below
//	                 gets the same answer, so "/test" works like "/".
//	/delay?ms=N      sleeps N milliseconds (0..600000), then answers like /.
//	                 A client that goes away ends the sleep early.
//	/status?code=N   answers status N (200..599) with body "status N\n",
//	                 or no body for 204 and 304 (RFC 9110 sections 15.3.5
//	                 and 15.4.5).
//	/bytes?n=N       N deterministic bytes (0..1<<40): byte i is
//	                 Pattern[i%len(Pattern)], sent with Content-Length;
//	                 with &chunked=1 sent with Transfer-Encoding: chunked.
//	/echo            reads the request body (at most 64 MiB, else 413) and
//	                 sends it back with the request's Content-Type, plus
//	                 "X-Body-Sha256: <hex>" and "X-Body-Length: <n>".
//	/sha256          streams the request body of any size through SHA-256
//	                 and answers "<hex sha256> <length>\n", plus the same
//	                 X-Body-Sha256 and X-Body-Length headers.
//	/close           hijacks the connection and closes it without writing
//	                 a byte; with ?rst=1 the close sends a TCP RST.
//	/headers         dumps the request head as text: the request line
//	                 ("GET /headers HTTP/1.1"), then "Host: <host>", then
//	                 one "Name: value" line per received field value,
//	                 sorted by canonical name. The framing fields that
//	                 net/http takes out of the header map are written back:
//	                 "Transfer-Encoding: chunked" when the body was chunked.
//
// Flags: -listen (default 127.0.0.1:8000; port 0 picks a free one, and the
// bound address is printed), -name (default backend1), -quiet (no startup
// line, no net/http error log), -fast (serve every request with the GET /
// answer from gnet event loops, parsed by pace's codec: the load harness's
// origin, several times cheaper per request than net/http; no other
// endpoints) and -loops (event loops in -fast mode, default 1).
//
// # Concurrency
//
// The handler is safe for concurrent use by any number of connections; its
// only shared state is immutable after construction plus a sync.Pool of
// response buffers. SIGINT or SIGTERM shuts the server down gracefully
// (five seconds at most).
package main
