// Package engine is pace's proxy: gnet event loops that accept client
// connections, parse requests with package codec, consult the rate
// limiter, pick a backend round robin, reuse a pooled keep-alive upstream
// connection owned by the same loop (or dial one off the loop and enroll
// it into that loop), and splice the response back while injecting
// headers. It also answers /metrics itself and drains gracefully.
//
// Concurrency: every session (client connection) and every upstream
// connection belongs to one event loop, and all of its state is touched
// only on that loop's goroutine — in gnet callbacks, or in functions run
// with EventLoop.Execute. Functions in this package say where they may be
// called: "loop" means only on the owning event loop, "any" means from any
// goroutine. Nothing on the request path takes a lock except the rate
// limiter's shard lock and the metrics' per-histogram lock.
//
// Bytes returned by gnet's Peek alias a buffer shared by the whole loop:
// they are parsed and copied (or written onward) inside the callback and
// never kept after it returns.
//
// Backpressure: stock gnet always reads a readable socket and its
// outbound buffers are unbounded, so pace bounds them itself. When more
// than buffer_limit bytes wait for a slow peer, the connection feeding it
// is parked: pace stops reading it (Conn.PauseRead, which pace's copy of
// gnet adds: third_party/gnet/PACE.md), and the kernel's socket buffers
// (and TCP flow control) hold the rest until the slow side drains below a
// quarter of the limit; then it is read again. See park.go.
//
// Dials block, so they run on a pool of goroutines with one queue per
// backend: a backend that drops SYNs holds its own workers for
// connect_timeout each and never delays dials to the others, and a dial
// whose backend was marked down while it waited is not made (upconn.go).
package engine
