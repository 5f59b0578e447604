package codec

import (
	"bytes"
	"encoding/binary"
)

// Default limits, used for zero Limits fields and a nil *Limits.
const (
	DefaultMaxTarget = 8 << 10
	DefaultMaxHead   = 64 << 10
	DefaultMaxFields = 100

	maxLeadingCRLF = 4 // empty lines ignored before a request-line (RFC 9112 section 2.2)
)

// Limits bounds what a parser accepts. Zero fields take the defaults; a nil
// *Limits means all defaults.
type Limits struct {
	MaxTarget int // request-target bytes; zero means 8 KiB (over -> ErrTargetTooLong, 414)
	MaxHead   int // whole head incl. final CRLFCRLF; zero means 64 KiB (over -> ErrHeadTooLarge, 431)
	MaxFields int // header fields; zero means 100 (over -> ErrTooManyFields, 431)
	// MaxBody bounds the payload of a chunked body, counted as each
	// chunk-size line completes, before any of that chunk is passed on;
	// zero means no bound (over -> ErrBodyTooLarge, 413). The parser does
	// not check Content-Length against it: the caller decides that from
	// Framing before it reads the body.
	MaxBody int64
}

func (l *Limits) values() (maxTarget, maxHead, maxFields int) {
	maxTarget, maxHead, maxFields = DefaultMaxTarget, DefaultMaxHead, DefaultMaxFields
	if l != nil {
		if l.MaxTarget > 0 {
			maxTarget = l.MaxTarget
		}
		if l.MaxHead > 0 {
			maxHead = l.MaxHead
		}
		if l.MaxFields > 0 {
			maxFields = l.MaxFields
		}
	}
	return
}

// Field is one header field line. Name and Value are sub-slices of the parsed
// input; Value has leading and trailing OWS trimmed. A zero Field has an empty
// name and value and is never produced by a parser.
type Field struct{ Name, Value []byte }

// BodyKind says how a message body is delimited (RFC 9112 section 6.3).
type BodyKind uint8

const (
	BodyNone    BodyKind = iota // no body
	BodyLength                  // Content-Length bytes
	BodyChunked                 // chunked transfer coding
	BodyClose                   // read until close (responses only)
)

func (k BodyKind) String() string {
	switch k {
	case BodyNone:
		return "none"
	case BodyLength:
		return "length"
	case BodyChunked:
		return "chunked"
	case BodyClose:
		return "close"
	}
	return "BodyKind(?)"
}

// Framing is the body framing of one message. The zero Framing is BodyNone.
type Framing struct {
	Kind   BodyKind
	Length int64 // for BodyLength: the body size in bytes; ignored otherwise
}

// headInfo collects what the framing-relevant fields said while a head is
// scanned. It lives on the stack of Parse.
type headInfo struct {
	minor int // HTTP/1.minor of the message, known before fields are scanned

	clCount int
	cl      int64
	clRaw   []byte

	te          bool // some Transfer-Encoding field was seen
	teChunked   bool // chunked was seen
	teLastChunk bool // the last coding seen so far is chunked
	teOther     bool // a registered coding other than chunked was seen

	hostCount int
	host      []byte

	connClose, connKeepAlive, connUpgrade bool
	upgrade, expect100                    bool
	xff                                   int

	// response allows whitespace between an ordinary field name and its
	// colon, which a proxy must remove rather than reject in a response
	// (RFC 9112 section 5.1). Requests get 400 for it.
	response bool
}

// parseFields scans field lines from buf[i:] up to and including the empty
// line that ends the head. It appends to *fields and returns the index just
// past the final CRLF, or ErrNeedMore when buf ends first. Each byte is
// looked at once: the value scan stops at the CR that ends the line.
func parseFields(buf []byte, i int, fields *[]Field, maxFields int, h *headInfo) (int, error) {
	fs := *fields
	n, err := scanFields(buf, i, &fs, maxFields, h)
	*fields = fs
	return n, err
}

func scanFields(buf []byte, i int, fs *[]Field, maxFields int, h *headInfo) (int, error) {
	for {
		if i >= len(buf) {
			return 0, ErrNeedMore
		}
		switch c := buf[i]; c {
		case '\r':
			if i+1 == len(buf) {
				return 0, ErrNeedMore
			}
			if buf[i+1] != '\n' {
				return 0, ErrBareCR
			}
			return i + 2, nil
		case '\n':
			return 0, ErrBareLF // RFC 9112 section 2.2: we accept only CRLF
		case ' ', '\t':
			return 0, ErrObsFold // RFC 9112 section 5.2
		}
		k := i
		for k < len(buf) && tcharTab[buf[k]] {
			k++
		}
		if k == len(buf) {
			return 0, ErrNeedMore
		}
		colon := k
		if buf[k] != ':' || k == i {
			if colon = spacedColon(buf, i, k, h); colon < 0 {
				return 0, nameErr(buf, i, k)
			}
		}
		v := colon + 1
		for v < len(buf) && isOWS(buf[v]) {
			v++
		}
		e := v + valueEnd(buf[v:])
		if e+1 >= len(buf) {
			if e < len(buf) && buf[e] != '\r' {
				return 0, ctlErr(buf[e])
			}
			return 0, ErrNeedMore
		}
		if buf[e] != '\r' {
			return 0, ctlErr(buf[e])
		}
		if buf[e+1] != '\n' {
			return 0, ErrBareCR
		}
		next := e + 2
		for e > v && isOWS(buf[e-1]) {
			e--
		}
		if len(*fs) >= maxFields {
			return 0, ErrTooManyFields
		}
		*fs = append(*fs, Field{Name: buf[i:k], Value: buf[v:e]})
		if err := h.observe(buf[i:k], buf[v:e], len(*fs)-1); err != nil {
			return 0, err
		}
		i = next
	}
}

// valueEnd returns the length of the longest prefix of v made of field-value
// bytes (RFC 9110 section 5.5: VCHAR, obs-text, SP, HTAB). Eight bytes at a
// time it checks for any byte < 0x20 or == 0x7f, and falls back to the table
// for a word that has one (HTAB, or the CR ending the line).
func valueEnd(v []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; len(v)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(v[i:])
		d := x ^ (lo * 0x7f)
		if ((x-lo*0x20)&^x|(d-lo)&^d)&hi != 0 {
			break
		}
	}
	for i < len(v) && valueTab[v[i]] {
		i++
	}
	return i
}

// spacedColon returns the index of the colon after spaces that end the
// field name buf[i:k] of a response, or -1 when the name is empty,
// something other than spaces and a colon follows, the buffer ends first,
// or the name is a framing field: Content-Length and Transfer-Encoding
// with a space stay an error, as a recipient that reads them differently
// could frame the body differently. Spaces only, as net/http's client
// accepts them: a tab there stays an error too.
func spacedColon(buf []byte, i, k int, h *headInfo) int {
	if !h.response || k == i || buf[k] != ' ' {
		return -1
	}
	j := k
	for j < len(buf) && buf[j] == ' ' {
		j++
	}
	if j == len(buf) || buf[j] != ':' {
		return -1
	}
	if name := buf[i:k]; eqFold(name, "content-length") || eqFold(name, "transfer-encoding") {
		return -1
	}
	return j
}

// nameErr classifies the byte at b[k] that ended the field name b[i:k]
// early (or the empty name when k == i).
func nameErr(b []byte, i, k int) error {
	c := b[k]
	switch {
	case k == i && c == ':':
		return ErrBadFieldName
	case isOWS(c):
		j := k
		for j < len(b) && isOWS(b[j]) {
			j++
		}
		if j == len(b) {
			return ErrNeedMore
		}
		if b[j] == ':' && k > i {
			return ErrSpaceBeforeColon // RFC 9112 section 5.1
		}
		return ErrBadFieldName
	case c == '\r':
		if k+1 < len(b) && b[k+1] != '\n' {
			return ErrBareCR
		}
		return ErrBadFieldName // no colon
	}
	if err := ctlErr(c); err != nil {
		return err
	}
	return ErrBadFieldName
}

// observe records what a field means for framing and connection handling.
// Errors that are certain from this one field are returned at once.
func (h *headInfo) observe(name, value []byte, idx int) error {
	switch len(name) {
	case 4:
		if eqFold(name, "host") {
			h.hostCount++
			if h.hostCount > 1 {
				return ErrDuplicateHost // RFC 9112 section 3.2
			}
			h.host = value
		}
	case 6:
		if eqFold(name, "expect") && eqFold(value, "100-continue") {
			h.expect100 = true
		}
	case 7:
		if eqFold(name, "upgrade") {
			h.upgrade = true
		} else if eqFold(name, "trailer") {
			// RFC 9110 section 6.5.1: these may not be sent as trailers.
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				if eqFold(tok, "content-length") || eqFold(tok, "transfer-encoding") ||
					eqFold(tok, "trailer") || eqFold(tok, "host") {
					return ErrBadTrailer
				}
			}
		}
	case 10:
		if eqFold(name, "connection") {
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				switch {
				case eqFold(tok, "close"):
					h.connClose = true
				case eqFold(tok, "keep-alive"):
					h.connKeepAlive = true
				case eqFold(tok, "upgrade"):
					h.connUpgrade = true
				}
			}
		}
	case 14:
		if eqFold(name, "content-length") {
			// RFC 9110 section 8.6: repeats must be byte-identical ("5" and
			// "05" are rejected like net/http does).
			if h.clCount > 0 {
				if !bytes.Equal(value, h.clRaw) {
					return ErrBadContentLength
				}
			} else {
				n, ok := parseContentLength(value)
				if !ok {
					return ErrBadContentLength // RFC 9112 section 6.3 rule 5
				}
				h.cl, h.clRaw = n, value
			}
			h.clCount++
		}
	case 15:
		if h.xff < 0 && eqFold(name, "x-forwarded-for") {
			h.xff = idx
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return h.observeTE(value)
		}
	}
	return nil
}

// observeTE applies one Transfer-Encoding field (RFC 9112 section 6.1).
func (h *headInfo) observeTE(value []byte) error {
	if h.minor == 0 {
		return ErrBadTransferEncoding // RFC 9112 section 6.1: faulty framing in HTTP/1.0
	}
	h.te = true
	if len(value) == 0 {
		return ErrBadTransferEncoding
	}
	for v := value; ; {
		var tok []byte
		tok, v = nextToken(v)
		switch {
		case len(tok) == 0:
			// RFC 9110 section 5.6.1.2 asks recipients to ignore empty
			// list elements, but "chunked," is refused on purpose: this
			// field decides framing, net/http refuses it and nginx
			// answers 501, so a proxy in front of or behind pace could
			// frame the message differently (RFC 9112 section 11.2).
			return ErrBadTransferEncoding
		case eqFold(tok, "chunked"):
			if h.teChunked {
				return ErrBadTransferEncoding // chunked twice, RFC 9112 section 6.1
			}
			h.teChunked, h.teLastChunk = true, true
		case eqFold(tok, "gzip"), eqFold(tok, "deflate"), eqFold(tok, "compress"),
			eqFold(tok, "x-gzip"), eqFold(tok, "x-compress"):
			h.teOther, h.teLastChunk = true, false
		default:
			for _, c := range tok {
				if !tcharTab[c] {
					return ErrBadTransferEncoding // parameters or junk
				}
			}
			return ErrUnknownCoding
		}
		if v == nil {
			return nil
		}
	}
}

// framing settles the body framing from the collected fields. It is shared by
// requests and responses; callers handle the cases with no body.
func (h *headInfo) framing() (Framing, error) {
	if h.te {
		if h.clCount > 0 {
			return Framing{}, ErrBothCLAndTE // RFC 9112 section 6.1, smuggling
		}
		if !h.teLastChunk {
			return Framing{}, ErrBadTransferEncoding // RFC 9112 section 6.3 rule 4
		}
		if h.teOther {
			return Framing{}, ErrUnknownCoding
		}
		return Framing{Kind: BodyChunked}, nil
	}
	if h.clCount > 0 {
		return Framing{Kind: BodyLength, Length: h.cl}, nil
	}
	return Framing{}, nil
}

func (h *headInfo) keepAlive() bool {
	if h.connClose {
		return false
	}
	if h.minor == 0 {
		return h.connKeepAlive
	}
	return true
}

// parseContentLength parses 1*DIGIT of at most 19 digits without overflow.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseVersion parses "HTTP/1.0" or "HTTP/1.1" (RFC 9112 section 2.3). For a
// well-formed HTTP/x.y of another version it returns ErrBadVersion, for
// anything else bad.
func parseVersion(v []byte, bad error) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, bad
	}
	if v[5] != '1' || v[7] > '1' {
		return 0, ErrBadVersion
	}
	return int(v[7] - '0'), nil
}

// getField returns the value of the first field named name, ignoring case.
func getField(fs []Field, name string) []byte {
	for i := range fs {
		if eqFoldAny(fs[i].Name, name) {
			return fs[i].Value
		}
	}
	return nil
}

// needMore is the answer for an incomplete head: ErrHeadTooLarge once the
// input already fills the limit, else ErrNeedMore.
func needMore(b []byte, maxHead int) error {
	if len(b) >= maxHead {
		return ErrHeadTooLarge
	}
	return ErrNeedMore
}
