package codec

import (
	"math"
	"strconv"
)

// MaxChunkLine bounds a chunk-size line: with extensions and CRLF it must be
// shorter than this, like in net/http (RFC 9112 section 7.1.1 sets no limit;
// longer lines are ErrBadChunk). A chunk-size has at most 16 hex digits.
const MaxChunkLine = 4096

// BodyMode says what Step writes to dst.
type BodyMode uint8

const (
	// ModeForward leaves dst untouched; the caller forwards src[:consumed]
	// as is. For chunked bodies those bytes have been validated, trailers
	// included.
	ModeForward BodyMode = iota
	// ModeDechunk appends only the payload bytes to dst (for HTTP/1.0
	// clients). Chunk framing and trailers are dropped.
	ModeDechunk
	// ModeRechunk appends a clean chunked stream to dst: "%x\r\n" sizes with
	// no extensions, payload, and a final "0\r\n\r\n" with trailers dropped.
	// For BodyLength and BodyClose the payload of each Step becomes one
	// chunk, so a close-delimited response can be sent on a persistent
	// connection; for BodyClose the final chunk is written by Finish.
	ModeRechunk
)

// chunked-body parser states (RFC 9112 section 7.1).
const (
	stSizeStart uint8 = iota // first hex digit of chunk-size
	stSize                   // more hex digits
	stExt                    // chunk-ext bytes up to CR
	stSizeLF                 // LF ending the size line
	stData                   // chunk-data
	stDataCR                 // CR after chunk-data
	stDataLF                 // LF after chunk-data
	stTrStart                // start of a trailer line or the final CRLF
	stTrName                 // trailer field name
	stTrValue                // trailer field value
	stTrLF                   // LF ending a trailer line
	stTrEndLF                // LF ending the trailer section
)

// Body is a streaming framer for one message body. It never buffers the body:
// chunk-size lines and trailers are validated byte by byte, so lines split
// across Step calls at any point work without a copy.
//
// The zero Body is a finished BodyNone body.
type Body struct {
	kind     BodyKind
	mode     BodyMode
	state    uint8
	done     bool
	termDue  bool     // ModeRechunk of a non-chunked body: "0\r\n\r\n" still to write
	trNameN  uint8    // length of trName's name; len(trName)+1 once longer than any forbidden name
	trName   [17]byte // lower-cased start of the current trailer name
	lineLen  int32    // bytes of the current chunk-size line
	trLen    int32    // bytes of the trailer section so far
	trFields int32
	maxHead  int32
	maxField int32
	left     int64 // BodyLength: bytes left; chunked: bytes left in this chunk
	size     int64 // chunk-size being parsed
	budget   int64 // chunked: payload still allowed by Limits.MaxBody, plus one; 0 means no bound
	err      error // sticky framing error
}

// Reset prepares b for a body with framing f, written to dst as mode says.
// Trailers are bounded by the default limits.
func (b *Body) Reset(f Framing, mode BodyMode) { b.ResetLimits(f, mode, nil) }

// ResetLimits is Reset with trailers bounded by lim.MaxHead bytes and
// lim.MaxFields fields (nil or zero fields mean the defaults), and a
// chunked payload by lim.MaxBody.
func (b *Body) ResetLimits(f Framing, mode BodyMode, lim *Limits) {
	_, maxHead, maxFields := lim.values()
	*b = Body{kind: f.Kind, mode: mode, maxHead: int32(min(maxHead, math.MaxInt32)), maxField: int32(min(maxFields, math.MaxInt32))}
	if lim != nil && lim.MaxBody > 0 && lim.MaxBody < math.MaxInt64 {
		b.budget = lim.MaxBody + 1
	}
	switch f.Kind {
	case BodyNone:
		b.done = true
	case BodyLength:
		b.left = f.Length
		if mode == ModeRechunk {
			b.termDue = true
		} else if f.Length <= 0 {
			b.done = true
		}
	case BodyClose:
		b.termDue = mode == ModeRechunk
	}
}

// Done reports whether the whole body has been consumed (and, in
// ModeRechunk, the final chunk written).
func (b *Body) Done() bool { return b.done || b.kind == BodyNone }

// Remaining returns bytes left for BodyLength, -1 otherwise.
func (b *Body) Remaining() int64 {
	if b.kind == BodyLength {
		return b.left
	}
	return -1
}

var lastChunk = []byte("0\r\n\r\n")

// Step consumes as much of src as belongs to the current body. It returns the
// (possibly grown) dst, the number of src bytes consumed (bytes after the
// body's end are not consumed: they belong to the next message), whether the
// body is now complete, and a framing error (ErrBadChunk, or a trailer field
// error as for heads). An error is sticky: later calls return it again
// without consuming. Step does not allocate when dst has capacity.
func (b *Body) Step(dst, src []byte) (out []byte, consumed int, done bool, err error) {
	if b.Done() {
		return dst, 0, true, nil
	}
	switch b.kind {
	case BodyLength:
		n := len(src)
		if int64(n) > b.left {
			n = int(b.left)
		}
		dst = b.emit(dst, src[:n])
		b.left -= int64(n)
		if b.left == 0 {
			b.finish(&dst)
		}
		return dst, n, b.done, nil
	case BodyClose:
		return b.emit(dst, src), len(src), false, nil
	}
	if b.err != nil {
		return dst, 0, false, b.err
	}
	out, consumed, done, err = b.stepChunked(dst, src)
	b.err = err
	return
}

// Finish tells b the input ended (the peer closed). It completes a BodyClose
// body (writing the final chunk in ModeRechunk) and returns ErrTruncated for
// any other unfinished body.
func (b *Body) Finish(dst []byte) ([]byte, error) {
	if b.Done() {
		return dst, nil
	}
	if b.kind == BodyClose {
		b.finish(&dst)
		return dst, nil
	}
	return dst, ErrTruncated
}

func (b *Body) finish(dst *[]byte) {
	if b.termDue {
		*dst = append(*dst, lastChunk...)
		b.termDue = false
	}
	b.done = true
}

// emit writes payload p of a non-chunked body as the mode says.
func (b *Body) emit(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	switch b.mode {
	case ModeDechunk:
		dst = append(dst, p...)
	case ModeRechunk:
		dst = strconv.AppendUint(dst, uint64(len(p)), 16)
		dst = append(dst, '\r', '\n')
		dst = append(dst, p...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func (b *Body) stepChunked(dst, src []byte) ([]byte, int, bool, error) {
	i := 0
	for i < len(src) {
		if b.state == stData {
			n := len(src) - i
			if int64(n) > b.left {
				n = int(b.left)
			}
			if b.mode != ModeForward {
				dst = append(dst, src[i:i+n]...)
			}
			i += n
			b.left -= int64(n)
			if b.left == 0 {
				b.state = stDataCR
			}
			continue
		}
		c := src[i]
		i++
		switch b.state {
		case stSizeStart:
			v := hexTab[c]
			if v < 0 {
				return dst, i, false, ErrBadChunk // empty or non-hex size
			}
			b.size, b.lineLen, b.state = int64(v), 1, stSize
			continue
		case stSize:
			if v := hexTab[c]; v >= 0 {
				// At most 16 digits, leading zeros included: net/http
				// rejects more, and a size line another parser reads
				// differently must not get through.
				if b.size > (1<<63-1)>>4 || b.lineLen >= 16 { // lineLen: digits so far
					return dst, i, false, ErrBadChunk // overflow
				}
				b.size = b.size<<4 | int64(v)
			} else {
				switch c {
				case ';':
					b.state = stExt
				// RFC 9112 section 7.1.1 allows BWS before ";", but
				// net/http and others do not: reject it so that no
				// backend can read the size line differently.
				case '\r':
					b.state = stSizeLF
				default:
					return dst, i, false, ErrBadChunk
				}
			}
		case stExt:
			if c == '\r' {
				b.state = stSizeLF
			} else if !valueTab[c] {
				return dst, i, false, ErrBadChunk // CTL, bare LF
			}
		case stSizeLF:
			if c != '\n' {
				return dst, i, false, ErrBadChunk // bare CR
			}
			if b.size == 0 {
				b.state = stTrStart
				continue
			}
			if b.budget > 0 {
				// budget >= 1 and size < 2^63: no overflow.
				if b.budget -= b.size; b.budget <= 0 {
					return dst, i, false, ErrBodyTooLarge // before any of this chunk
				}
			}
			if b.mode == ModeRechunk {
				dst = strconv.AppendUint(dst, uint64(b.size), 16)
				dst = append(dst, '\r', '\n')
			}
			b.left, b.state = b.size, stData
			continue
		case stDataCR:
			if c != '\r' {
				return dst, i, false, ErrBadChunk // missing CRLF after chunk-data
			}
			b.state = stDataLF
			continue
		case stDataLF:
			if c != '\n' {
				return dst, i, false, ErrBadChunk
			}
			if b.mode == ModeRechunk {
				dst = append(dst, '\r', '\n')
			}
			b.state = stSizeStart
			continue
		default:
			if err := b.trailerByte(c); err != nil {
				return dst, i, false, err
			}
			if b.done {
				if b.mode == ModeRechunk {
					dst = append(dst, lastChunk...)
				}
				return dst, i, true, nil
			}
			continue
		}
		// Still on the chunk-size line; with its LF it must stay shorter
		// than MaxChunkLine.
		b.lineLen++
		if b.lineLen >= MaxChunkLine-1 {
			return dst, i, false, ErrBadChunk
		}
	}
	return dst, i, false, nil
}

// trailerByte advances the trailer-section parser (RFC 9112 section 7.1.2)
// by one byte, with the field rules of heads.
func (b *Body) trailerByte(c byte) error {
	if b.trLen >= b.maxHead { // compared before the increment: no wrap at MaxInt32
		return ErrHeadTooLarge
	}
	b.trLen++
	switch b.state {
	case stTrStart:
		switch {
		case c == '\r':
			b.state = stTrEndLF
		case tcharTab[c]:
			if b.trFields >= b.maxField {
				return ErrTooManyFields
			}
			b.trFields++
			b.trName[0], b.trNameN = lowerTab[c], 1
			b.state = stTrName
		case isOWS(c):
			return ErrObsFold
		default:
			if err := ctlErr(c); err != nil {
				return err
			}
			return ErrBadFieldName
		}
	case stTrName:
		switch {
		case tcharTab[c]:
			if int(b.trNameN) < len(b.trName) {
				b.trName[b.trNameN] = lowerTab[c]
			}
			b.trNameN = uint8(min(int(b.trNameN)+1, len(b.trName)+1))
		case c == ':':
			if forbiddenTrailer(b.trName[:min(int(b.trNameN), len(b.trName))], int(b.trNameN)) {
				return ErrBadTrailer
			}
			b.state = stTrValue
		case isOWS(c):
			return ErrSpaceBeforeColon
		case c == '\r' || c == '\n':
			return ErrBadFieldName // no colon
		default:
			if err := ctlErr(c); err != nil {
				return err
			}
			return ErrBadFieldName
		}
	case stTrValue:
		if c == '\r' {
			b.state = stTrLF
		} else if !valueTab[c] {
			return ctlErr(c)
		}
	case stTrLF:
		if c != '\n' {
			return ErrBareCR
		}
		b.state = stTrStart
	case stTrEndLF:
		if c != '\n' {
			return ErrBareCR
		}
		b.done = true
	}
	return nil
}

// forbiddenTrailer reports whether a trailer field may not be sent because
// it affects framing or routing (RFC 9110 section 6.5.1): Content-Length,
// Transfer-Encoding, Trailer and Host. n is the full name length.
func forbiddenTrailer(lower []byte, n int) bool {
	if n != len(lower) {
		return false
	}
	switch string(lower) {
	case "content-length", "transfer-encoding", "trailer", "host":
		return true
	}
	return false
}
