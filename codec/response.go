package codec

import "bytes"

// Response is a parsed response head. The aliasing rules of Request apply:
// every []byte aliases the input passed to Parse, and Fields is reused.
//
// The zero Response is an empty, unparsed response.
type Response struct {
	Minor  int    // HTTP/1.Minor: 0 or 1
	Status int    // three-digit status code, 100-999; 0 before Parse
	Reason []byte // reason-phrase, possibly empty (RFC 9112 section 4)
	Fields []Field

	// Body is the body framing per RFC 9112 section 6.3: none for 1xx, 204,
	// 304, and responses to HEAD; 2xx to CONNECT too (see ParseMethod).
	// BodyClose when neither Content-Length nor Transfer-Encoding is given.
	Body Framing

	// KeepAlive reports whether the connection may carry another exchange:
	// version default and Connection close/keep-alive, and false for a
	// close-delimited body. False means close after this response.
	KeepAlive bool
}

// Reset empties r, keeping the capacity of Fields.
func (r *Response) Reset() {
	*r = Response{Fields: r.Fields[:0]}
}

// Get returns the value of the first field named name (ASCII
// case-insensitive), or nil. It does not allocate.
func (r *Response) Get(name string) []byte { return getField(r.Fields, name) }

// Parse parses a response head from b; head is true when the request was HEAD
// (so no body follows). Results and errors are as for Request.Parse; a
// malformed status line is ErrBadStatusLine. Responses get the same
// strictness as requests: the engine answers 502 and must not reuse the
// backend connection after any error.
func (r *Response) Parse(b []byte, lim *Limits, head bool) (int, error) {
	var method []byte
	if head {
		method = methodHEAD
	}
	return r.ParseMethod(b, lim, method)
}

var methodHEAD = []byte("HEAD")

// ParseMethod is Parse for a response to a request with the given method. It
// knows the two methods that change response framing: HEAD (never a body) and
// CONNECT (a 2xx response has no body; the connection becomes a tunnel).
func (r *Response) ParseMethod(b []byte, lim *Limits, method []byte) (int, error) {
	r.Reset()
	_, maxHead, maxFields := lim.values()
	buf := b
	if len(buf) > maxHead {
		buf = buf[:maxHead]
	}
	p := bytes.IndexByte(buf, '\n')
	if p < 0 {
		if len(buf) > 0 && buf[0] != 'H' {
			return 0, ErrBadStatusLine
		}
		return 0, needMore(b, maxHead)
	}
	if p == 0 || buf[p-1] != '\r' {
		return 0, ErrBareLF
	}
	if err := r.parseStatusLine(buf[:p-1]); err != nil {
		return 0, err
	}
	h := headInfo{minor: r.Minor, xff: -1, response: true}
	n, err := parseFields(buf, p+1, &r.Fields, maxFields, &h)
	if err != nil {
		if err == ErrNeedMore {
			err = needMore(b, maxHead)
		}
		return 0, err
	}
	// Framing fields are validated even when no body follows.
	f, err := h.framing()
	if err != nil {
		return 0, err
	}
	r.KeepAlive = h.keepAlive()
	switch {
	case string(method) == "HEAD", r.Status < 200, r.Status == 204, r.Status == 304,
		string(method) == "CONNECT" && r.Status < 300:
		// RFC 9112 section 6.3 rules 1 and 2.
		f = Framing{}
	case f.Kind == BodyNone:
		// RFC 9112 section 6.3 rule 8: read until the server closes.
		f = Framing{Kind: BodyClose}
		r.KeepAlive = false
	}
	r.Body = f
	return n, nil
}

// parseStatusLine parses "HTTP-version SP status-code SP [reason-phrase]"
// (RFC 9112 section 4). A missing SP after the code is tolerated.
func (r *Response) parseStatusLine(line []byte) error {
	if len(line) < 12 {
		return ErrBadStatusLine
	}
	minor, err := parseVersion(line[:8], ErrBadStatusLine)
	if err != nil {
		return err
	}
	if line[8] != ' ' {
		return ErrBadStatusLine
	}
	d0, d1, d2 := line[9]-'0', line[10]-'0', line[11]-'0'
	if d0 < 1 || d0 > 9 || d1 > 9 || d2 > 9 {
		return ErrBadStatusLine
	}
	var reason []byte
	if len(line) > 12 {
		if line[12] != ' ' {
			return ErrBadStatusLine
		}
		reason = line[13:]
		for _, c := range reason {
			if !valueTab[c] {
				if err := ctlErr(c); err != nil {
					return err
				}
				return ErrBadStatusLine
			}
		}
	}
	r.Minor = minor
	r.Status = int(d0)*100 + int(d1)*10 + int(d2)
	r.Reason = reason
	return nil
}
