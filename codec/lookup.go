package codec

// Value returns the value of the i-th (0-based) line of the field named
// name (ASCII case-insensitive) in message order, or nil when there are no
// more. Callers that must see every line of a repeatable field, such as
// X-Forwarded-For, use it. No allocation.
func (r *Request) Value(name string, i int) []byte { return fieldValue(r.Fields, name, i) }

// Value is Request.Value for a response.
func (r *Response) Value(name string, i int) []byte { return fieldValue(r.Fields, name, i) }

func fieldValue(fs []Field, name string, i int) []byte {
	for j := range fs {
		if eqFoldAny(fs[j].Name, name) {
			if i == 0 {
				return fs[j].Value
			}
			i--
		}
	}
	return nil
}

// HasToken reports whether the comma-separated list v (RFC 9110 section
// 5.6.1) holds token, compared ASCII case-insensitively, as for Connection
// or Upgrade. No allocation.
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextToken(v)
		if eqFoldAny(tok, token) {
			return true
		}
	}
	return false
}

// ParseContentLength parses a Content-Length value with the same rules
// the parser applies (RFC 9110 section 8.6: digits only, no sign, no
// overflow).
func ParseContentLength(v []byte) (int64, bool) { return parseContentLength(v) }
