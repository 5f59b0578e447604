// Package codec reads and writes HTTP/1.1 messages for pace without copying or
// allocating per message. It works on plain []byte and knows nothing about the
// network.
//
// # What it does
//
// Request.Parse and Response.Parse parse a message head (start line and header
// section) and work out how the body is framed (RFC 9112 section 6). Body is a
// streaming framer that walks a body as bytes arrive, validating chunked
// framing and optionally removing it (ModeDechunk) or rewriting it in a clean
// form (ModeRechunk). AppendRequestHead and AppendResponseHead write the head
// pace sends to the other side, with hop-by-hop fields removed (RFC 9110
// section 7.6.1) and one clean framing field.
//
// The parsers are strict because pace is a security boundary: any message
// whose framing another implementation could read differently is rejected
// (request smuggling, RFC 9112 section 11.2). In particular:
//
//   - Only CRLF ends a line; a bare CR or a bare LF anywhere is rejected.
//   - Up to 4 empty lines (CRLF) before a request-line are ignored
//     (RFC 9112 section 2.2); a fifth is rejected.
//   - Content-Length must be 1 to 19 decimal digits. The same value repeated in
//     several Content-Length fields is accepted as one (RFC 9110 section 8.6);
//     a comma-separated list in one field is rejected, even with equal values.
//   - The only transfer coding pace implements is chunked, and it must appear
//     exactly once, last. Other registered codings ("gzip, chunked") and
//     unknown ones ("x-foo") are answered with 501 (ErrUnknownCoding).
//     Transfer-Encoding in an HTTP/1.0 message is rejected.
//   - A message with both Content-Length and Transfer-Encoding is rejected,
//     request or response.
//   - The request-target must be visible ASCII (0x21-0x7E); raw bytes >= 0x80
//     must be percent-encoded by the client. Its form must fit the method
//     (RFC 9112 section 3.2): "*" only for OPTIONS, authority-form only and
//     always for CONNECT.
//   - A chunk-size is 1 to 16 hex digits with nothing but ";" extensions after
//     it (no whitespace, although RFC 9112 section 7.1.1 allows BWS, because
//     net/http and other backends refuse it); extensions may hold no control
//     bytes; a size line with its CRLF is shorter than MaxChunkLine.
//   - Trailer fields follow the head field rules; Content-Length,
//     Transfer-Encoding, Trailer and Host may not be trailers (RFC 9110
//     section 6.5.1), nor be named in a Trailer field.
//
// StatusOf maps every rejection to the status pace answers with before it
// closes the connection.
//
// # Aliasing
//
// Every []byte in a parsed Request or Response (Method, Target, Field.Name,
// Field.Value, Host, Reason) is a sub-slice of the buffer passed to Parse. It is
// valid only while that buffer is unchanged; copy what must outlive it. Parse
// reuses the Fields slice, so keep one Request per connection.
//
// # Concurrency
//
// A Request, Response or Body value is not safe for concurrent use; each
// belongs to one connection. Package-level functions (AppendRequestHead,
// AppendResponseHead, StatusOf) keep no state and are safe to call from any
// number of goroutines.
package codec
