package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// corpusCase is one hostile request from testdata/smuggle/*.txt.
//
// File format: lines starting with '#' are comments; "### NAME" starts a
// case; then "key: value" lines:
//
//	why:      what the case probes, with the RFC section
//	expect:   one acceptable outcome (repeatable; any one must match):
//	          STATUS[,STATUS...] [backend=N] [body="GO-QUOTED"|body=*] [close|keep|any] [probe=STATUS]
//	          backend defaults to 1 for 2xx and 0 otherwise; body defaults to ""
//	          when backend=1; the connection rule defaults to close for
//	          400/414/431/501/505 and any otherwise; probe defaults to 200.
//	          Status 0 means "closed without a response".
//	instance: default | limited (a pace whose rate limit is already spent)
//	send:     the raw bytes; continuation lines start with whitespace;
//	          literal newlines are dropped, so write \r\n; escapes are
//	          \r \n \t \0 \\ \xHH; templates {M} (this client's marker),
//	          {A:N} (N bytes 'a'), {H:N} (N header lines).
type corpusCase struct {
	File, Name, Why string
	Line            int
	Expect          []expectation
	Instance        string
	Send            string
}

type expectation struct {
	Statuses []int
	Backend  int
	Body     *string // nil: any body
	Conn     string  // "close", "keep", "any" or "auto" (close for 400/414/431/501/505, else any)
	Probe    int
	// Responses is how many responses the case's bytes produce (pipelined
	// requests); all but the first must be 200.
	Responses int
}

// connRule resolves "auto" for the observed status (pace's rule: malformed
// requests get Connection: close and the connection is closed).
func (e expectation) connRule(status int) string {
	if e.Conn != "auto" {
		return e.Conn
	}
	switch status {
	case 400, 414, 431, 501, 505:
		return "close"
	}
	return "any"
}

func (e expectation) String() string {
	s := fmt.Sprintf("status %v backend=%d", e.Statuses, e.Backend)
	if e.Body != nil && e.Backend > 0 {
		s += fmt.Sprintf(" body=%q", *e.Body)
	}
	s += " " + e.Conn + fmt.Sprintf(" probe=%d", e.Probe)
	if e.Responses > 1 {
		s += fmt.Sprintf(" responses=%d", e.Responses)
	}
	return s
}

var (
	expectBodyRE = regexp.MustCompile(`body=("(?:[^"\\]|\\.)*"|\*)`)
	templateRE   = regexp.MustCompile(`\{(M|A:\d+|H:\d+)\}`)
	markerRE     = regexp.MustCompile(`mk[0-9a-f]{8}`)
)

func parseExpect(s string) (expectation, error) {
	var e expectation
	bodySet := false
	if m := expectBodyRE.FindStringSubmatch(s); m != nil {
		bodySet = true
		if m[1] != "*" {
			b, err := strconv.Unquote(m[1])
			if err != nil {
				return e, fmt.Errorf("body %s: %v", m[1], err)
			}
			e.Body = &b
		}
		s = strings.Replace(s, m[0], "", 1)
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return e, fmt.Errorf("empty expect")
	}
	for _, st := range strings.Split(f[0], ",") {
		n, err := strconv.Atoi(st)
		if err != nil {
			return e, fmt.Errorf("status %q: %v", st, err)
		}
		e.Statuses = append(e.Statuses, n)
	}
	e.Backend, e.Probe, e.Conn, e.Responses = -1, 200, "auto", 1
	for _, tok := range f[1:] {
		switch {
		case tok == "close" || tok == "keep" || tok == "any":
			e.Conn = tok
		case strings.HasPrefix(tok, "backend="):
			n, err := strconv.Atoi(tok[len("backend="):])
			if err != nil {
				return e, err
			}
			e.Backend = n
		case strings.HasPrefix(tok, "responses="):
			n, err := strconv.Atoi(tok[len("responses="):])
			if err != nil || n < 1 {
				return e, fmt.Errorf("bad %q", tok)
			}
			e.Responses = n
		case strings.HasPrefix(tok, "probe="):
			n, err := strconv.Atoi(tok[len("probe="):])
			if err != nil {
				return e, err
			}
			e.Probe = n
		default:
			return e, fmt.Errorf("unknown token %q", tok)
		}
	}
	first := e.Statuses[0]
	if e.Backend < 0 {
		e.Backend = 0
		if first >= 200 && first < 300 {
			e.Backend = 1
		}
	}
	if !bodySet && e.Backend > 0 {
		empty := ""
		e.Body = &empty
	}
	return e, nil
}

func loadCorpus(t testing.TB) []*corpusCase {
	t.Helper()
	files, err := filepath.Glob("testdata/smuggle/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var all []*corpusCase
	seen := map[string]bool{}
	for _, f := range files {
		cs, err := parseCorpusFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if seen[c.Name] {
				t.Fatalf("%s:%d: %v: duplicate case name %q", c.File, c.Line, errBadCorpus, c.Name)
			}
			seen[c.Name] = true
		}
		all = append(all, cs...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	return all
}

func parseCorpusFile(path string) ([]*corpusCase, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []*corpusCase
	var cur *corpusCase
	inSend := false
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	base := filepath.Base(path)
	line := 0
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s:%d: %w: %s", base, line, errBadCorpus, fmt.Sprintf(format, a...))
	}
	for sc.Scan() {
		line++
		l := sc.Text()
		if strings.HasPrefix(l, "###") {
			cur = &corpusCase{File: base, Line: line, Name: strings.TrimSpace(l[3:]), Instance: "default"}
			out = append(out, cur)
			inSend = false
			continue
		}
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			inSend = false
			continue
		}
		if inSend && (l[0] == ' ' || l[0] == '\t') {
			cur.Send += strings.TrimSpace(l)
			continue
		}
		inSend = false
		if cur == nil {
			return nil, fail("line outside a case")
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fail("want key: value, got %q", l)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "why":
			cur.Why = v
		case "expect":
			e, err := parseExpect(v)
			if err != nil {
				return nil, fail("%v", err)
			}
			cur.Expect = append(cur.Expect, e)
		case "instance":
			cur.Instance = v
		case "send":
			cur.Send, inSend = v, true
		default:
			return nil, fail("unknown key %q", k)
		}
	}
	for _, c := range out {
		if c.Send == "" || len(c.Expect) == 0 || c.Why == "" {
			line = c.Line
			return nil, fail("case %q needs why, expect and send", c.Name)
		}
		if _, err := unescape(c.Send); err != nil {
			line = c.Line
			return nil, fail("case %q: %v", c.Name, err)
		}
	}
	return out, sc.Err()
}

// expand applies the templates and escapes of a send line for marker.
func expand(src, marker string) ([]byte, error) {
	src = templateRE.ReplaceAllStringFunc(src, func(m string) string {
		in := m[1 : len(m)-1]
		switch {
		case in == "M":
			return marker
		case strings.HasPrefix(in, "A:"):
			n, _ := strconv.Atoi(in[2:])
			return strings.Repeat("a", n)
		default:
			n, _ := strconv.Atoi(in[2:])
			var b strings.Builder
			for i := 0; i < n; i++ {
				fmt.Fprintf(&b, "X-Pad-%d: v\\r\\n", i)
			}
			return b.String()
		}
	})
	return unescape(src)
}

func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, fmt.Errorf("trailing backslash")
		}
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("short \\x escape")
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x escape %q", s[i+1:i+3])
			}
			out = append(out, byte(n))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return out, nil
}

func TestCorpusParses(t *testing.T) {
	cs := loadCorpus(t)
	if len(cs) < 60 {
		t.Errorf("corpus has %d cases, want at least 60", len(cs))
	}
	for _, c := range cs {
		b, err := expand(c.Send, "mk0123abcd")
		if err != nil {
			t.Errorf("expand(%q) error %v", c.Send, err)
			continue
		}
		if c.Instance != "default" && c.Instance != "limited" {
			t.Errorf("%s: instance %q, want default or limited", c.Name, c.Instance)
		}
		if !strings.Contains(string(b), "mk0123abcd") {
			t.Errorf("%s: send has no {M} marker; the backend checks need one", c.Name)
		}
	}
}

func TestExpandEscapes(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`GET /{M} HTTP/1.1\r\n`, "GET /mk00000001 HTTP/1.1\r\n"},
		{`a\tb\0c\\d\x7f`, "a\tb\x00c\\d\x7f"},
		{`{A:3}`, "aaa"},
		{`{H:2}`, "X-Pad-0: v\r\nX-Pad-1: v\r\n"},
		{`bare\rcr and bare\nlf`, "bare\rcr and bare\nlf"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, "mk00000001")
		if err != nil || string(got) != tt.want {
			t.Errorf("expand(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`a\`, `\q`, `\xZZ`, `\x1`} {
		if _, err := unescape(bad); err == nil {
			t.Errorf("unescape(%q) error = nil, want an error", bad)
		}
	}
}

func TestParseExpect(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"400", "status [400] backend=0 auto probe=200"},
		{"200", `status [200] backend=1 body="" auto probe=200`},
		{`200 body="a b" keep`, `status [200] backend=1 body="a b" keep probe=200`},
		{`400,200 backend=1 body=*`, `status [400 200] backend=1 auto probe=200`},
		{`429 probe=429 close`, `status [429] backend=0 close probe=429`},
		{`200 backend=2 responses=2`, `status [200] backend=2 body="" auto probe=200 responses=2`},
	}
	for _, tt := range tests {
		e, err := parseExpect(tt.in)
		if err != nil || e.String() != tt.want {
			t.Errorf("parseExpect(%q) = %v, %v, want %v", tt.in, e, err, tt.want)
		}
	}
	for _, bad := range []string{"", "abc", "200 backend=x", "200 frob", "200 responses=0"} {
		if _, err := parseExpect(bad); err == nil {
			t.Errorf("parseExpect(%q) error = nil, want an error", bad)
		}
	}
}
