package engine

import (
	"net/netip"
	"strconv"

	"github.com/valyala/bytebufferpool"

	"github.com/pace-proxy/pace/metrics"
)

var methodsBytes = func() [][]byte {
	out := make([][]byte, len(metrics.Methods))
	for i, m := range metrics.Methods {
		out[i] = []byte(m)
	}
	return out
}()

// serveMetrics answers the metrics endpoint from the loop. The exposition
// is small (a few KiB) and rendering it takes microseconds. Loop.
func (s *session) serveMetrics() {
	e := s.lp.e
	if e.metricsAllow != nil && !allowed(e.metricsAllow, s.peer) {
		// nginx's "access forbidden by rule", for metrics.allow.
		e.logf(levelInfo, "metrics endpoint refused: the client is not in metrics.allow", "client", s.ip)
		s.local(403, "Forbidden", "403 Forbidden\n")
		return
	}
	if s.method != 0 && s.method != 1 {
		// A request body was not read: the caller set closeAfter.
		// RFC 9110 section 15.5.6: a 405 lists the allowed methods.
		s.localWith(405, "Method Not Allowed", "405 Method Not Allowed: use GET or HEAD\n", "Allow: GET, HEAD\r\n")
		return
	}
	b := bytebufferpool.Get()
	e.met.WritePrometheus(b)
	h := s.lp.head[:0]
	h = append(h, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(b.B)), 10)
	h = append(h, "\r\n"...)
	h = appendConnection(h, s.closeAfter, s.minor)
	h = append(h, "\r\n"...)
	body := b.B
	if s.isHead {
		body = nil
	}
	s.lp.head = h[:0]
	s.status = 200
	s.bytesOut = int64(len(b.B))
	// Counted before the write, as localWith does: a write that fails
	// closes the client, and its session, from inside it.
	s.record() // the histogram and the access log, like every request
	// The caller ends the exchange next (done), as writeClientv's end
	// requires.
	s.writeClientv(h, body, s.closing())
	bytebufferpool.Put(b)
}

// allowed reports whether addr is in one of the prefixes. Any goroutine.
func allowed(prefixes []netip.Prefix, addr netip.Addr) bool {
	addr = addr.WithZone("") // a link-local peer's zone: Contains rejects zoned addresses
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
