package ratelimit

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// Header field names the Extractor asks for. Field names are
// case-insensitive (RFC 9110 section 5.1); the engine's lookup must be too.
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderXRealIP       = "X-Real-IP"
)

// maxFieldLines bounds how many X-Forwarded-For field lines are examined.
const maxFieldLines = 64

// Extractor turns a request into a Key without allocating. It is immutable
// after NewExtractor and safe for concurrent use.
type Extractor struct {
	header  string         // header:NAME extractor's NAME; "" for client_ip
	trusted []netip.Prefix // unmapped; empty: no proxy is trusted
	realIP  bool           // real_ip_header = "X-Real-IP": X-Forwarded-For is not read
	v6bits  int            // leading bits of an IPv6 client address in its key
	seed0   maphash.Seed
	seed1   maphash.Seed
}

// NewExtractor builds the extractor cfg describes (defaults filled in, then
// validated).
func NewExtractor(cfg Config) (*Extractor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	header, _ := parseExtractor(cfg.KeyExtractor)
	realIP, _ := parseRealIPHeader(cfg.RealIPHeader)
	e := &Extractor{header: header, realIP: realIP, v6bits: cfg.IPv6Prefix, seed0: maphash.MakeSeed(), seed1: maphash.MakeSeed()}
	for _, s := range cfg.TrustedProxies {
		p, _ := parseTrusted(s)
		e.trusted = append(e.trusted, p)
	}
	return e, nil
}

// Header returns NAME for a "header:NAME" extractor and "" for client_ip.
func (e *Extractor) Header() string { return e.header }

// Trusted reports whether a (unmapped first) is inside trusted_proxies.
func (e *Extractor) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range e.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Key computes the key for a request from TCP peer peer. get returns the
// first value of a request header field, or nil if the field is absent.
//
// Because get sees only the first field line, a request carrying several
// X-Forwarded-For lines is read as if it had only the first; if the engine
// can list every line, call KeyFromValues instead (a trusted proxy that adds
// its own line rather than extending the existing one needs that).
//
// For client_ip the key is the address ClientIP returns, an IPv6 one cut
// to its first ipv6_prefix bits. For header:NAME it is a seeded 128-bit
// hash of NAME's first value (surrounding whitespace removed); when NAME is absent or empty it falls back to the ClientIP key,
// so such requests are still limited, per client. ok is false only when
// there is nothing to key on: no usable header value and an invalid peer;
// k is then the zero Key.
func (e *Extractor) Key(peer netip.Addr, get func(name string) []byte) (k Key, ok bool) {
	return e.KeyFromValues(peer, func(name string, i int) []byte {
		if i == 0 {
			return get(name)
		}
		return nil
	})
}

// KeyFromValues is Key for an engine that can list every field line:
// values(name, i) returns the value of the i-th (0-based) line of field name
// in message order, or nil when there are no more.
func (e *Extractor) KeyFromValues(peer netip.Addr, values func(name string, i int) []byte) (k Key, ok bool) {
	if e.header != "" {
		if v := trimOWS(values(e.header, 0)); len(v) > 0 {
			binary.LittleEndian.PutUint64(k[:8], maphash.Bytes(e.seed0, v))
			binary.LittleEndian.PutUint64(k[8:], maphash.Bytes(e.seed1, v))
			return k, true
		}
	}
	a := e.clientIP(peer, values)
	if !a.IsValid() {
		return Key{}, false
	}
	if a.Is6() && e.v6bits > 0 && e.v6bits < 128 {
		p, _ := a.Prefix(e.v6bits) // the zone is gone, so no error
		a = p.Addr()
	}
	return KeyFromAddr(a), true
}

// ClientIP returns the client address: the peer (unmapped, zone removed),
// or, when the peer is a trusted proxy, the address it vouches for:
//
//   - X-Forwarded-For (all lines, in order, form one comma-separated list;
//     RFC 9110 section 5.3) is walked right to left; each element is the
//     address the hop to its right received the request from. The first
//     element that is not a trusted proxy is the client. If every element is
//     trusted, the leftmost is used. If an element does not parse as an
//     address (optionally with a port, e.g. "[2001:db8::1]:443"), the walk
//     stops and the last trusted hop reached is used, never anything
//     further left, since a client can write anything there. Empty elements
//     are skipped (RFC 9110 section 5.6.1).
//   - Otherwise X-Real-IP, when it occurs exactly once and parses.
//   - Otherwise the peer.
//
// With real_ip_header = "X-Real-IP", X-Forwarded-For is not read: the
// client is X-Real-IP's address (exactly once, and parsing), else the peer.
//
// Headers from an untrusted peer are never read. The result is invalid only
// when peer is.
func (e *Extractor) ClientIP(peer netip.Addr, get func(name string) []byte) netip.Addr {
	return e.clientIP(peer, func(name string, i int) []byte {
		if i == 0 {
			return get(name)
		}
		return nil
	})
}

// ClientIPFromValues is ClientIP with every field line (see KeyFromValues).
func (e *Extractor) ClientIPFromValues(peer netip.Addr, values func(name string, i int) []byte) netip.Addr {
	return e.clientIP(peer, values)
}

func (e *Extractor) clientIP(peer netip.Addr, values func(string, int) []byte) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !peer.IsValid() || len(e.trusted) == 0 || !e.Trusted(peer) {
		return peer
	}
	if e.realIP {
		return realIP(peer, values)
	}
	lines := 0 // every line: the rightmost ones are the trusted hops' (bounded by the engine's max_header_fields)
	for values(HeaderXForwardedFor, lines) != nil {
		lines++
	}
	lo := max(lines-maxFieldLines, 0) // examine at most maxFieldLines, the rightmost
	cur, seen := peer, lo > 0
	for line := lines - 1; line >= lo; line-- {
		v := values(HeaderXForwardedFor, line)
		for end := len(v); end > 0; {
			start := end - 1
			for start >= 0 && v[start] != ',' {
				start--
			}
			elem := trimOWS(v[start+1 : end])
			end = start
			if len(elem) == 0 {
				continue
			}
			a, ok := parseHostAddr(elem)
			if !ok {
				return cur
			}
			a = a.Unmap()
			if !e.Trusted(a) {
				return a
			}
			cur, seen = a, true
		}
	}
	if seen {
		return cur
	}
	return realIP(peer, values)
}

// realIP returns X-Real-IP's address when the field occurs exactly once and
// parses, else peer.
func realIP(peer netip.Addr, values func(string, int) []byte) netip.Addr {
	if v := values(HeaderXRealIP, 0); v != nil && values(HeaderXRealIP, 1) == nil {
		if a, ok := parseHostAddr(trimOWS(v)); ok {
			return a.Unmap()
		}
	}
	return peer
}

// trimOWS removes optional whitespace (SP / HTAB, RFC 9110 section 5.6.3).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
