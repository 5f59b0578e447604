package codec

import "errors"

// Sentinel errors. Every rejection is one of these; StatusOf gives the status
// pace answers with before closing the connection.
var (
	// ErrNeedMore means the input holds no complete head yet. It is not an
	// error to report to the peer: read more bytes and call Parse again.
	ErrNeedMore = errors.New("codec: need more data")

	ErrBadRequest          = errors.New("codec: bad request")                               // 400, generic
	ErrBadRequestLine      = errors.New("codec: malformed request line")                    // 400, RFC 9112 section 3
	ErrBadMethod           = errors.New("codec: invalid method token")                      // 400, RFC 9110 section 9.1
	ErrBadVersion          = errors.New("codec: unsupported HTTP version")                  // 505, RFC 9110 section 15.6.6
	ErrTargetTooLong       = errors.New("codec: request-target too long")                   // 414
	ErrHeadTooLarge        = errors.New("codec: message head too large")                    // 431
	ErrTooManyFields       = errors.New("codec: too many header fields")                    // 431
	ErrBadFieldName        = errors.New("codec: invalid field name")                        // 400, RFC 9110 section 5.1
	ErrSpaceBeforeColon    = errors.New("codec: whitespace between field name and colon")   // 400, RFC 9112 section 5.1
	ErrObsFold             = errors.New("codec: obsolete line folding")                     // 400, RFC 9112 section 5.2
	ErrBareCR              = errors.New("codec: bare CR")                                   // 400, RFC 9112 section 2.2
	ErrBareLF              = errors.New("codec: bare LF line terminator")                   // 400, RFC 9112 section 2.2
	ErrCtlChar             = errors.New("codec: control character in field")                // 400, RFC 9110 section 5.5
	ErrMissingHost         = errors.New("codec: missing Host field")                        // 400, RFC 9112 section 3.2
	ErrDuplicateHost       = errors.New("codec: more than one Host field")                  // 400, RFC 9112 section 3.2
	ErrBadHost             = errors.New("codec: invalid Host value")                        // 400, RFC 9112 section 3.2
	ErrBadContentLength    = errors.New("codec: invalid Content-Length")                    // 400, RFC 9112 section 6.3
	ErrBothCLAndTE         = errors.New("codec: both Content-Length and Transfer-Encoding") // 400, RFC 9112 section 6.1
	ErrBadTransferEncoding = errors.New("codec: invalid Transfer-Encoding")                 // 400, RFC 9112 section 6.3
	ErrUnknownCoding       = errors.New("codec: transfer coding not implemented")           // 501, RFC 9112 section 6.1
	ErrBadChunk            = errors.New("codec: malformed chunked encoding")                // 400, RFC 9112 section 7.1
	ErrBadTrailer          = errors.New("codec: framing or routing field in trailers")      // 400, RFC 9110 section 6.5.1
	ErrTruncated           = errors.New("codec: body ended before its framing said")        // 400, RFC 9112 section 8
	ErrBodyTooLarge        = errors.New("codec: request body larger than allowed")          // 413, RFC 9110 section 15.5.14
	ErrBadStatusLine       = errors.New("codec: malformed status line")                     // 502, RFC 9112 section 4
	ErrTLSHandshake        = errors.New("codec: TLS handshake on a plain-HTTP port")        // 400
)

// StatusOf maps a codec error to the HTTP status code pace answers with: 414,
// 431, 501, 505, 502 for ErrBadStatusLine (a response-only error) and 400 for
// every other rejection. It returns 0 for nil and ErrNeedMore, which are not
// rejections. Wrapped errors are unwrapped with errors.Is.
func StatusOf(err error) int {
	switch err {
	case nil, ErrNeedMore:
		return 0
	case ErrTargetTooLong:
		return 414
	case ErrHeadTooLarge, ErrTooManyFields:
		return 431
	case ErrUnknownCoding:
		return 501
	case ErrBadVersion:
		return 505
	case ErrBadStatusLine:
		return 502
	case ErrBodyTooLarge:
		return 413
	}
	for _, s := range [...]error{ErrNeedMore, ErrTargetTooLong, ErrHeadTooLarge, ErrTooManyFields,
		ErrUnknownCoding, ErrBadVersion, ErrBadStatusLine, ErrBodyTooLarge} {
		if errors.Is(err, s) {
			return StatusOf(s)
		}
	}
	return 400
}
