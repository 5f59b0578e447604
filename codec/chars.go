package codec

// Byte-class tables. Indexing a [256] array with a byte needs no bounds check,
// so validation loops are one load and one branch per byte.
var (
	tcharTab  = makeTab(isTchar)                                                            // RFC 9110 section 5.6.2 token
	valueTab  = makeTab(func(c byte) bool { return c == '\t' || (c >= 0x20 && c != 0x7f) }) // field-content, SP, HTAB, obs-text (RFC 9110 section 5.5)
	targetTab = makeTab(func(c byte) bool { return c > 0x20 && c < 0x7f })                  // visible ASCII
	hostTab   = makeTab(isHostChar)                                                         // uri-host [":" port], RFC 3986 section 3.2.2
	lowerTab  = func() (t [256]byte) {
		for i := range t {
			c := byte(i)
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			t[i] = c
		}
		return t
	}()
	hexTab = func() (t [256]int8) {
		for i := range t {
			t[i] = -1
		}
		for c := '0'; c <= '9'; c++ {
			t[c] = int8(c - '0')
		}
		for c := 'a'; c <= 'f'; c++ {
			t[c] = int8(c-'a') + 10
			t[c-'a'+'A'] = int8(c-'a') + 10
		}
		return t
	}()
)

func makeTab(f func(byte) bool) (t [256]bool) {
	for i := range t {
		t[i] = f(byte(i))
	}
	return t
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isHostChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '[', ']', '%':
		return true
	}
	return false
}

// eqFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b. Lengths are compared first.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lowerTab[b[i]] != s[i] {
			return false
		}
	}
	return true
}

// eqFoldAny is eqFold for an s of any case.
func eqFoldAny(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lowerTab[b[i]] != lowerTab[s[i]] {
			return false
		}
	}
	return true
}

// eqFoldBytes is eqFoldAny for two byte slices.
func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerTab[a[i]] != lowerTab[b[i]] {
			return false
		}
	}
	return true
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS removes optional whitespace (SP, HTAB) from both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// nextToken splits the comma-separated list v (RFC 9110 section 5.6.1): it
// returns the first element with OWS trimmed and the rest after the comma.
func nextToken(v []byte) (tok, rest []byte) {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			return trimOWS(v[:i]), v[i+1:]
		}
	}
	return trimOWS(v), nil
}

// ctlErr classifies a byte that is not allowed in a field value or name.
func ctlErr(c byte) error {
	switch {
	case c == '\r':
		return ErrBareCR
	case c == '\n':
		return ErrBareLF
	case c < 0x20 || c == 0x7f:
		return ErrCtlChar
	}
	return nil
}
