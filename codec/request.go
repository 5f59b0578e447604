package codec

import (
	"bytes"
	"encoding/binary"
)

// Request is a parsed request head. All []byte fields alias the input passed
// to Parse and are valid only as long as that input is. Fields is a reused
// scratch slice: Parse truncates it to zero length and appends, so once it has
// grown to the usual field count parsing allocates nothing.
//
// The zero Request is an empty, unparsed request.
type Request struct {
	Method []byte // request method token, case-sensitive (RFC 9110 section 9.1); nil before Parse
	Target []byte // request-target as sent (RFC 9112 section 3.2); nil before Parse
	Minor  int    // HTTP/1.Minor: 0 or 1
	Fields []Field

	Host      []byte  // the Host value (nil if absent; HTTP/1.0 may omit it)
	Body      Framing // body framing per RFC 9112 section 6; zero means no body
	KeepAlive bool    // connection persists after this exchange (version default + Connection close/keep-alive); false closes
	Expect100 bool    // Expect: 100-continue on an HTTP/1.1 request (RFC 9110 section 10.1.1); false: none
	Upgrade   bool    // Upgrade field present and Connection names "upgrade"; false: no upgrade asked

	// XFF is the index in Fields of the first X-Forwarded-For field, or -1
	// when there is none. The zero value (before Parse) points at Fields[0]
	// only by accident: read it only after a successful Parse.
	XFF int

	// Authority is the host[:port] of an absolute-form request-target
	// ("GET http://a.example/x HTTP/1.1"), nil for the other forms. When it
	// is set, Host holds it too: RFC 9112 section 3.2.2 says the Host field
	// is then ignored and replaced, which AppendRequestHead does.
	Authority []byte
	// Path is the request-target to forward to an origin server: Target
	// itself, except for absolute-form where it is the path and query
	// ("/" when the target has none). Nil before Parse.
	Path []byte

	pathBuf []byte // scratch for a Path that is no sub-slice of the input
}

// Reset empties r, keeping the capacity of Fields and of its scratch.
func (r *Request) Reset() {
	*r = Request{Fields: r.Fields[:0], XFF: -1, pathBuf: r.pathBuf[:0]}
}

// Release drops the scratch r owns (the origin form built for an
// absolute-form target with a query and no path) and Path, which may
// point into it, for a caller that keeps r idle. Parse works as before
// afterwards. It does not allocate.
func (r *Request) Release() { r.Path, r.pathBuf = nil, nil }

// Get returns the value of the first field named name (ASCII
// case-insensitive), or nil. It does not allocate.
func (r *Request) Get(name string) []byte { return getField(r.Fields, name) }

// Parse parses a request head from b. It returns the head length (bytes
// consumed, including any ignored leading empty lines and the final CRLF
// CRLF), or ErrNeedMore if b holds no complete head yet, or a rejection error.
// Errors that are already certain in an incomplete head (a bad byte, a bare
// LF, a request-target over MaxTarget, more than MaxHead bytes without the
// end of the head) are returned at once rather than waiting for more. A nil
// *Limits means defaults. Parse resets r first; after an error r holds no
// meaningful values.
//
// Parse re-scans b from the start on every call, so callers should call it
// again only when new bytes arrived.
func (r *Request) Parse(b []byte, lim *Limits) (int, error) {
	r.Reset()
	maxTarget, maxHead, maxFields := lim.values()
	buf := b
	if len(buf) > maxHead {
		buf = buf[:maxHead]
	}

	if len(buf) > 0 && buf[0] == 0x16 {
		// A TLS record (a ClientHello): 0x16 starts no request-line.
		// Say so instead of whatever its bytes happen to break.
		return 0, ErrTLSHandshake
	}
	// RFC 9112 section 2.2: ignore a few empty lines before the request-line.
	off := 0
	for off < len(buf) && (buf[off] == '\r' || buf[off] == '\n') {
		if buf[off] == '\n' {
			return 0, ErrBareLF
		}
		if off+1 == len(buf) {
			return 0, needMore(b, maxHead)
		}
		if buf[off+1] != '\n' {
			return 0, ErrBareCR
		}
		off += 2
		if off > 2*maxLeadingCRLF {
			return 0, ErrBadRequestLine
		}
	}

	p := bytes.IndexByte(buf[off:], '\n')
	if p < 0 {
		if err := partialRequestLine(buf[off:], maxTarget); err != nil {
			return 0, err
		}
		return 0, needMore(b, maxHead)
	}
	if p == 0 || buf[off+p-1] != '\r' {
		return 0, ErrBareLF
	}
	if err := r.parseRequestLine(buf[off:off+p-1], maxTarget); err != nil {
		return 0, err
	}

	h := headInfo{minor: r.Minor, xff: -1}
	n, err := parseFields(buf, off+p+1, &r.Fields, maxFields, &h)
	if err != nil {
		if err == ErrNeedMore {
			err = needMore(b, maxHead)
		}
		return 0, err
	}

	// RFC 9112 section 3.2: HTTP/1.1 requires exactly one Host.
	if h.hostCount == 0 && r.Minor == 1 {
		return 0, ErrMissingHost
	}
	if h.host != nil {
		if !validHost(h.host) {
			return 0, ErrBadHost
		}
		r.Host = h.host
	}
	if r.Authority != nil {
		r.Host = r.Authority // RFC 9112 section 3.2.2
	}
	f, err := h.framing()
	if err != nil {
		return 0, err
	}
	// RFC 9112 section 6.3 rule 7: a request with neither field has no body.
	r.Body = f
	r.KeepAlive = h.keepAlive()
	r.Expect100 = h.expect100 && r.Minor == 1
	r.Upgrade = h.upgrade && h.connUpgrade
	r.XFF = h.xff
	return n, nil
}

// parseRequestLine parses "method SP request-target SP HTTP-version" (RFC 9112
// section 3) from line, which excludes the CRLF.
func (r *Request) parseRequestLine(line []byte, maxTarget int) error {
	m := 0
	for m < len(line) && tcharTab[line[m]] {
		m++
	}
	if m == len(line) || line[m] != ' ' {
		if m < len(line) && m > 0 {
			return ErrBadMethod
		}
		return ErrBadRequestLine
	}
	if m == 0 {
		return ErrBadRequestLine
	}
	t := m + 1
	e := t + targetEnd(line[t:])
	if e-t > maxTarget {
		return ErrTargetTooLong
	}
	if e == t || e == len(line) || line[e] != ' ' {
		if e < len(line) && line[e] == '\r' {
			return ErrBareCR
		}
		return ErrBadRequestLine
	}
	minor, err := parseVersion(line[e+1:], ErrBadRequestLine)
	if err != nil {
		return err
	}
	r.Method, r.Target, r.Minor = line[:m], line[t:e], minor
	return r.checkTargetForm()
}

// checkTargetForm enforces the four request-target forms of RFC 9112 section
// 3.2: origin-form for most requests, absolute-form (http and https only),
// authority-form only (and always) for CONNECT, asterisk-form only for
// OPTIONS. It sets Path and Authority.
func (r *Request) checkTargetForm() error {
	method, target := r.Method, r.Target
	r.Path = target
	if string(method) == "CONNECT" {
		if target[0] == '/' || target[0] == '*' {
			return ErrBadRequestLine
		}
		return nil
	}
	switch target[0] {
	case '/':
		return nil
	case '*':
		if len(target) == 1 && string(method) == "OPTIONS" {
			return nil
		}
		return ErrBadRequestLine
	}
	// absolute-form: "http://" or "https://" authority path-abempty [ "?" query ]
	// (RFC 9110 section 4.2). Userinfo is refused (RFC 9110 section 4.2.4).
	var rest []byte
	switch {
	case len(target) > 7 && eqFold(target[:7], "http://"):
		rest = target[7:]
	case len(target) > 8 && eqFold(target[:8], "https://"):
		rest = target[8:]
	default:
		return ErrBadRequestLine
	}
	a := 0
	for a < len(rest) && rest[a] != '/' && rest[a] != '?' {
		if !hostTab[rest[a]] {
			return ErrBadRequestLine // "@", "#" and the like
		}
		a++
	}
	if a == 0 || !validHost(rest[:a]) {
		return ErrBadRequestLine // empty or malformed host, RFC 9110 section 4.2.1
	}
	r.Authority = rest[:a]
	switch {
	case a == len(rest) && string(method) == "OPTIONS":
		// The last proxy sends an OPTIONS for the server as a whole as
		// "OPTIONS *" (RFC 9112 section 3.2.4).
		r.Path = asterisk
	case a == len(rest):
		r.Path = slash
	case rest[a] == '?':
		// "http://h?q": path-abempty is empty, and its origin form is
		// "/?q" (RFC 9112 section 3.2.1), no sub-slice of the input.
		r.pathBuf = append(append(r.pathBuf[:0], '/'), rest[a:]...)
		r.Path = r.pathBuf
	default:
		r.Path = rest[a:]
	}
	return nil
}

var (
	slash    = []byte("/")
	asterisk = []byte("*")
)

// partialRequestLine reports errors already certain in an incomplete
// request-line: a bad method byte, a request-target over the limit, or
// anything after the target but SP and the start of an HTTP-version.
func partialRequestLine(b []byte, maxTarget int) error {
	m := 0
	for m < len(b) && tcharTab[b[m]] {
		m++
	}
	if m == len(b) {
		return nil
	}
	if b[m] != ' ' || m == 0 {
		if c := b[m]; c == '\r' && m+1 < len(b) {
			return ErrBareCR
		} else if c == '\r' {
			return nil
		}
		if m == 0 {
			return ErrBadRequestLine
		}
		return ErrBadMethod
	}
	t := m + 1
	e := t
	for e < len(b) && targetTab[b[e]] {
		e++
	}
	if e-t > maxTarget {
		return ErrTargetTooLong
	}
	if e == len(b) || b[e] == '\r' {
		return nil
	}
	// What follows the target must be SP and the start of an
	// HTTP-version, "HTTP/" DIGIT "." DIGIT (RFC 9112 section 2.3), so
	// that a line of junk fails now, not at the head size limit. Which
	// version is the full line's question (505 for HTTP/2.0).
	if b[e] != ' ' || e == t {
		return ErrBadRequestLine
	}
	v := b[e+1:]
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case i < 5:
			if c != "HTTP/"[i] {
				return ErrBadRequestLine
			}
		case i == 5 || i == 7:
			if c < '0' || c > '9' {
				return ErrBadRequestLine
			}
		case i == 6:
			if c != '.' {
				return ErrBadRequestLine
			}
		default:
			if c != '\r' {
				return ErrBadRequestLine
			}
			return nil
		}
	}
	return nil
}

// targetEnd returns the length of the longest prefix of v made of visible
// ASCII (0x21-0x7E), eight bytes at a time while no word has a byte < 0x21,
// >= 0x80 or == 0x7f.
func targetEnd(v []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; len(v)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		d := x ^ (lo * 0x7f)
		if (x|(x-lo*0x21)|(d-lo)&^d)&hi != 0 {
			break
		}
	}
	for i < len(v) && targetTab[v[i]] {
		i++
	}
	return i
}

// validHost reports whether h has the shape uri-host [":" port] (RFC 9110
// section 7.2, RFC 3986 section 3.2.2): an IP-literal in brackets, or a
// name or IPv4 address without ":", then optionally ":" and digits. The
// bytes themselves are checked against hostTab. RFC 9112 section 3.2
// answers any other Host value with 400. Empty is valid: a target with no
// authority is sent with an empty Host.
func validHost(h []byte) bool {
	i := 0
	if len(h) > 0 && h[0] == '[' {
		for i = 1; i < len(h) && h[i] != ']'; i++ {
			if c := h[i]; !hostTab[c] || c == '[' {
				return false
			}
		}
		if i == len(h) || i == 1 {
			return false // unclosed, or "[]"
		}
		i++
	} else {
		for ; i < len(h) && h[i] != ':'; i++ {
			if c := h[i]; !hostTab[c] || c == '[' || c == ']' {
				return false
			}
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' {
		return false // "[::1]x"
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
