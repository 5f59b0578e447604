package codec

import (
	"bytes"
	"strconv"
)

// HeadOptions controls AppendRequestHead and AppendResponseHead. The zero
// HeadOptions writes no framing field, no Connection field, drops nothing
// beyond the hop-by-hop fields and adds nothing.
type HeadOptions struct {
	// Framing is the framing field written for the outgoing message:
	// Content-Length: N for BodyLength, Transfer-Encoding: chunked for
	// BodyChunked, nothing otherwise (zero: nothing).
	Framing Framing
	// Close writes "Connection: close" (false: not written).
	Close bool
	// KeepAlive writes "Connection: keep-alive" (for HTTP/1.0 peers that asked
	// for it); ignored if Close (false: not written).
	KeepAlive bool
	// Upgrade keeps the Upgrade field and writes "Connection: upgrade"
	// (upgrade requests and 101 responses only). False drops Upgrade.
	Upgrade bool
	// Drop lists extra field names to drop, case-insensitive, e.g.
	// "X-Forwarded-For" when the caller re-adds it (nil: none).
	Drop []string
	// DropUnderscore drops fields whose name contains '_' (false: kept).
	// Backends that map field names to CGI-style variables read
	// X_Forwarded_For as X-Forwarded-For; nginx drops such fields unless
	// underscores_in_headers is on.
	DropUnderscore bool
	// Extra fields are appended after the copied ones, in order (nil: none).
	// They are written as given: callers must not put CR or LF in them.
	Extra []Field

	dropHost bool // set for absolute-form requests, whose Host is rewritten
}

var noOptions HeadOptions

// AppendRequestHead appends the upstream request head for r to dst: the
// request line always as HTTP/1.1; all fields except the hop-by-hop ones (RFC
// 9110 section 7.6.1: Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade unless
// opts.Upgrade), except Content-Length and Transfer-Encoding (replaced by one
// clean framing field from opts.Framing), except opts.Drop; then the
// Connection field opts asks for; then opts.Extra; then the final CRLF.
// Host is never dropped, even when Connection names it, except for an
// absolute-form request-target: then the request line carries r.Path (origin
// form) and Host is replaced by r.Authority (RFC 9112 section 3.2.2). For an
// HTTP/1.0 request without Host, put one in opts.Extra. A nil opts means zero options.
// No allocation when dst has capacity.
func AppendRequestHead(dst []byte, r *Request, opts *HeadOptions) []byte {
	if opts == nil {
		opts = &noOptions
	}
	path := r.Path
	if path == nil {
		path = r.Target
	}
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	if r.Authority != nil {
		// RFC 9112 section 3.2.2: replace Host by the target's authority.
		dst = append(dst, "Host: "...)
		dst = append(dst, r.Authority...)
		dst = append(dst, '\r', '\n')
		o := *opts
		o.dropHost = true
		return appendFields(dst, r.Fields, &o)
	}
	return appendFields(dst, r.Fields, opts)
}

// AppendResponseHead does the same for a response: status line
// "HTTP/1.1 <status> <reason>".
func AppendResponseHead(dst []byte, r *Response, opts *HeadOptions) []byte {
	if opts == nil {
		opts = &noOptions
	}
	s := r.Status
	if s < 100 || s > 999 {
		s = 500 // an unparsed Response; never write a malformed line
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, byte('0'+s/100), byte('0'+s/10%10), byte('0'+s%10), ' ')
	dst = append(dst, r.Reason...)
	dst = append(dst, '\r', '\n')
	return appendFields(dst, r.Fields, opts)
}

func appendFields(dst []byte, fs []Field, opts *HeadOptions) []byte {
	conn := -1 // index of the first Connection field
	for i := range fs {
		if eqFold(fs[i].Name, "connection") {
			conn = i
			break
		}
	}
	for i := range fs {
		f := &fs[i]
		if dropped(f.Name, fs, conn, opts) {
			continue
		}
		dst = append(dst, f.Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, f.Value...)
		dst = append(dst, '\r', '\n')
	}
	switch opts.Framing.Kind {
	case BodyLength:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, opts.Framing.Length, 10)
		dst = append(dst, '\r', '\n')
	case BodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case opts.Upgrade && opts.Close:
		dst = append(dst, "Connection: upgrade, close\r\n"...)
	case opts.Upgrade:
		dst = append(dst, "Connection: upgrade\r\n"...)
	case opts.Close:
		dst = append(dst, "Connection: close\r\n"...)
	case opts.KeepAlive:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	for i := range opts.Extra {
		f := &opts.Extra[i]
		dst = append(dst, f.Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, f.Value...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '\r', '\n')
}

// dropped reports whether the field called name must not be forwarded.
func dropped(name []byte, fs []Field, conn int, opts *HeadOptions) bool {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return true
		}
	case 4:
		if eqFold(name, "host") {
			return opts.dropHost // else never dropped, whatever Connection says
		}
	case 7:
		if eqFold(name, "trailer") {
			return true
		}
		if eqFold(name, "upgrade") {
			return !opts.Upgrade
		}
	case 10:
		if eqFold(name, "connection") || eqFold(name, "keep-alive") {
			return true
		}
	case 14:
		if eqFold(name, "content-length") {
			return true
		}
	case 16:
		if eqFold(name, "proxy-connection") {
			return true
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return true
		}
	}
	for _, d := range opts.Drop {
		if eqFoldAny(name, d) {
			return true
		}
	}
	if opts.DropUnderscore && bytes.IndexByte(name, '_') >= 0 {
		return true
	}
	if conn >= 0 {
		for i := conn; i < len(fs); i++ {
			if !eqFold(fs[i].Name, "connection") {
				continue
			}
			for v := fs[i].Value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				if eqFoldBytes(tok, name) {
					return true
				}
			}
		}
	}
	return false
}
