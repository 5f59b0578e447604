package codec

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type reqCase struct {
	name string
	in   string
	lim  *Limits
	err  error
	// checked only when err is nil
	method, target, host string // host "-" means nil
	minor                int
	body                 Framing
	keepAlive            bool
	expect, upgrade      bool
	n                    int // head length; 0 means len(in)
}

const get11 = "GET / HTTP/1.1\r\nHost: a\r\n"

func cl(n int64) Framing { return Framing{Kind: BodyLength, Length: n} }

var chunked = Framing{Kind: BodyChunked}

// ok builds a valid GET / HTTP/1.1 case with Host a.
func ok(name, in string, body Framing, keepAlive bool) reqCase {
	return reqCase{name: name, in: in, method: "GET", target: "/", host: "a", minor: 1, body: body, keepAlive: keepAlive}
}

func bad(name, in string, err error) reqCase { return reqCase{name: name, in: in, err: err} }

var requestCases = []reqCase{
	// valid
	ok("minimal", get11+"\r\n", Framing{}, true),
	ok("content-length", get11+"Content-Length: 12\r\n\r\n", cl(12), true),
	ok("content-length zero", get11+"Content-Length: 0\r\n\r\n", cl(0), true),
	ok("content-length leading zeros", get11+"Content-Length: 0012\r\n\r\n", cl(12), true),
	ok("content-length max int64", get11+"Content-Length: 9223372036854775807\r\n\r\n", cl(1<<63-1), true),
	ok("content-length repeated same", get11+"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", cl(5), true),
	ok("content-length OWS", get11+"Content-Length: \t 7 \t\r\n\r\n", cl(7), true),
	ok("chunked", get11+"Transfer-Encoding: chunked\r\n\r\n", chunked, true),
	ok("chunked mixed case", get11+"transfer-encoding: ChUnKeD\r\n\r\n", chunked, true),
	ok("chunked OWS", get11+"Transfer-Encoding:   chunked  \r\n\r\n", chunked, true),
	ok("connection close", get11+"Connection: close\r\n\r\n", Framing{}, false),
	ok("connection list close", get11+"Connection: keep-alive , Close\r\n\r\n", Framing{}, false),
	ok("connection two fields", get11+"Connection: foo\r\nConnection: close\r\n\r\n", Framing{}, false),
	ok("connection other", get11+"Connection: foo, bar\r\n\r\n", Framing{}, true),
	ok("no space after colon", "GET / HTTP/1.1\r\nHost:a\r\n\r\n", Framing{}, true),
	ok("empty value", get11+"X-Empty:\r\n\r\n", Framing{}, true),
	ok("obs-text value", get11+"X-T: caf\xc3\xa9\r\n\r\n", Framing{}, true),
	ok("tab in value", get11+"X-T: a\tb\r\n\r\n", Framing{}, true),
	ok("leading CRLF", "\r\n"+get11+"\r\n", Framing{}, true),
	ok("four leading CRLF", "\r\n\r\n\r\n\r\n"+get11+"\r\n", Framing{}, true),
	ok("host lower case name", "GET / HTTP/1.1\r\nhost: a\r\n\r\n", Framing{}, true),
	ok("expect other value", get11+"Expect: 200-ok\r\n\r\n", Framing{}, true),
	ok("upgrade without connection", get11+"Upgrade: websocket\r\n\r\n", Framing{}, true),
	{name: "trailing bytes not consumed", in: get11 + "\r\nGET / HTTP/1.1\r\n", method: "GET", target: "/", host: "a", minor: 1, keepAlive: true, n: len(get11) + 2},
	{name: "trailing bytes n", in: get11 + "\r\nNEXT", method: "GET", target: "/", host: "a", minor: 1, keepAlive: true, n: len(get11) + 2},
	{name: "http/1.0 default close", in: "GET / HTTP/1.0\r\n\r\n", method: "GET", target: "/", host: "-"},
	{name: "http/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", method: "GET", target: "/", host: "-", keepAlive: true},
	{name: "http/1.0 with host and CL", in: "POST /x HTTP/1.0\r\nHost: h:80\r\nContent-Length: 3\r\n\r\n", method: "POST", target: "/x", host: "h:80", body: cl(3)},
	{name: "http/1.0 expect ignored", in: "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", target: "/", host: "-", body: cl(1)},
	{name: "expect 100", in: "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n", method: "PUT", target: "/u", host: "a", minor: 1, body: cl(9), keepAlive: true, expect: true},
	{name: "upgrade", in: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", target: "/ws", host: "a", minor: 1, keepAlive: true, upgrade: true},
	{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", target: "*", host: "a", minor: 1, keepAlive: true},
	{name: "connect authority", in: "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", method: "CONNECT", target: "a.example:443", host: "a.example:443", minor: 1, keepAlive: true},
	{name: "absolute form", in: "GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n", method: "GET", target: "http://a.example/x?y", host: "a.example", minor: 1, keepAlive: true},
	{name: "absolute form replaces host", in: "GET HTTPS://b.example:8443 HTTP/1.1\r\nHost: a.example\r\n\r\n", method: "GET", target: "HTTPS://b.example:8443", host: "b.example:8443", minor: 1, keepAlive: true},
	bad("absolute form userinfo", "GET http://u@a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("partial line: spaces after method", "GET "+strings.Repeat(" ", 70000), ErrBadRequestLine),
	bad("partial line: junk after target", "GET / AAAA", ErrBadRequestLine),
	bad("partial line: junk after version", "GET / HTTP/1.1 x", ErrBadRequestLine),
	bad("partial line: bad version start", "GET / HTTQ", ErrBadRequestLine),
	bad("partial line: two spaces", "GET /  HTTP/1.1", ErrBadRequestLine),
	bad("partial line: no version dot", "GET / HTTP/1-", ErrBadRequestLine),
	bad("partial line: version 2 waits", "GET / HTTP/2.0", ErrNeedMore),
	bad("tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\r\n", ErrTLSHandshake),
	bad("host unclosed ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", ErrBadHost),
	bad("host two colons", "GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", ErrBadHost),
	bad("host port not digits", "GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", ErrBadHost),
	bad("host stray bracket", "GET / HTTP/1.1\r\nHost: a]b\r\n\r\n", ErrBadHost),
	bad("host junk after literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", ErrBadHost),
	bad("host empty literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", ErrBadHost),
	bad("absolute form unclosed ipv6", "GET http://[::1/x HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	{name: "host empty port", in: "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", method: "GET", target: "/", host: "a:", minor: 1, keepAlive: true},
	{name: "host ipv6 no port", in: "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", method: "GET", target: "/", host: "[fe80::1%25eth0]", minor: 1, keepAlive: true},
	bad("absolute form ftp", "GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("absolute form empty host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	{name: "extension method", in: "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", method: "PROPFIND", target: "/d", host: "a", minor: 1, keepAlive: true},
	{name: "empty host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n", method: "GET", target: "/", host: "", minor: 1, keepAlive: true},
	{name: "ipv6 host", in: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", method: "GET", target: "/", host: "[::1]:8080", minor: 1, keepAlive: true},
	{name: "target at limit", in: "GET /" + strings.Repeat("a", 15) + " HTTP/1.1\r\nHost: a\r\n\r\n", lim: &Limits{MaxTarget: 16}, method: "GET", target: "/" + strings.Repeat("a", 15), host: "a", minor: 1, keepAlive: true},
	{name: "fields at limit", in: get11 + "A: 1\r\nB: 2\r\n\r\n", lim: &Limits{MaxFields: 3}, method: "GET", target: "/", host: "a", minor: 1, keepAlive: true},
	{name: "head at limit", in: get11 + "\r\n", lim: &Limits{MaxHead: len(get11) + 2}, method: "GET", target: "/", host: "a", minor: 1, keepAlive: true},

	// incomplete
	bad("empty", "", ErrNeedMore),
	bad("partial method", "GE", ErrNeedMore),
	bad("partial line", "GET /index.html HT", ErrNeedMore),
	bad("partial CR", "GET / HTTP/1.1\r", ErrNeedMore),
	bad("no final CRLF", get11, ErrNeedMore),
	bad("final CR only", get11+"\r", ErrNeedMore),
	bad("partial field", get11+"Content-Le", ErrNeedMore),
	bad("leading CR only", "\r", ErrNeedMore),

	// request line
	bad("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("space before version twice", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("missing version", "GET /\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("missing target", "GET HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadMethod),
	bad("bad method char", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadMethod),
	bad("bad method early", "G@T", ErrBadMethod),
	bad("nul in target", "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("utf8 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("bare CR in target", "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", ErrBareCR),
	bad("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", ErrBadVersion),
	bad("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", ErrBadVersion),
	bad("HTTP/0.9 style", "GET / HTTP/0.9\r\n\r\n", ErrBadVersion),
	bad("version garbage", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("version too long", "GET / HTTP/1.11\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("connect origin form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("relative target", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine),
	bad("bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrBareLF),
	bad("bare LF leading", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBareLF),
	bad("five leading CRLF", "\r\n\r\n\r\n\r\n\r\n"+get11+"\r\n", ErrBadRequestLine),
	bad("target too long", "GET /"+strings.Repeat("a", DefaultMaxTarget)+" HTTP/1.1\r\nHost: a\r\n\r\n", ErrTargetTooLong),
	{name: "target too long early", in: "GET /" + strings.Repeat("a", 20), lim: &Limits{MaxTarget: 16}, err: ErrTargetTooLong},
	{name: "target too long limit", in: "GET /" + strings.Repeat("a", 16) + " HTTP/1.1\r\nHost: a\r\n\r\n", lim: &Limits{MaxTarget: 16}, err: ErrTargetTooLong},

	// fields
	bad("space before colon", get11+"Content-Length : 5\r\n\r\n", ErrSpaceBeforeColon),
	bad("tab before colon", get11+"X\t: 5\r\n\r\n", ErrSpaceBeforeColon),
	bad("space in name", get11+"X Y: 5\r\n\r\n", ErrBadFieldName),
	bad("obs-fold", get11+"X: a\r\n b\r\n\r\n", ErrObsFold),
	bad("obs-fold tab", get11+"X: a\r\n\tb\r\n\r\n", ErrObsFold),
	bad("obs-fold first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", ErrObsFold),
	bad("obs-fold early", get11+" ", ErrObsFold),
	bad("bare LF field", get11+"X: a\n\r\n", ErrBareLF),
	bad("bare LF end", get11+"\n", ErrBareLF),
	bad("bare CR in value", get11+"X: a\rb\r\n\r\n", ErrBareCR),
	bad("bare CR in name", get11+"X\rY: b\r\n\r\n", ErrBareCR),
	bad("nul in value", get11+"X: a\x00b\r\n\r\n", ErrCtlChar),
	bad("del in value", get11+"X: a\x7fb\r\n\r\n", ErrCtlChar),
	bad("ctl in value", get11+"X: a\x01\r\n\r\n", ErrCtlChar),
	bad("nul in name", get11+"X\x00: a\r\n\r\n", ErrCtlChar),
	bad("no colon", get11+"NoColon\r\n\r\n", ErrBadFieldName),
	bad("empty name", get11+": a\r\n\r\n", ErrBadFieldName),
	bad("bad name char", get11+"X(y): a\r\n\r\n", ErrBadFieldName),
	bad("too many fields default", get11+strings.Repeat("A: 1\r\n", DefaultMaxFields)+"\r\n", ErrTooManyFields),
	{name: "too many fields limit", in: get11 + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", lim: &Limits{MaxFields: 3}, err: ErrTooManyFields},
	{name: "head too large", in: get11 + "X: " + strings.Repeat("v", 100) + "\r\n\r\n", lim: &Limits{MaxHead: 64}, err: ErrHeadTooLarge},
	{name: "head too large incomplete", in: get11 + "X: " + strings.Repeat("v", 100), lim: &Limits{MaxHead: 64}, err: ErrHeadTooLarge},
	{name: "head one over", in: get11 + "\r\n", lim: &Limits{MaxHead: len(get11) + 1}, err: ErrHeadTooLarge},

	// host
	bad("missing host", "GET / HTTP/1.1\r\n\r\n", ErrMissingHost),
	bad("duplicate host", get11+"Host: b\r\n\r\n", ErrDuplicateHost),
	bad("duplicate host same", get11+"Host: a\r\n\r\n", ErrDuplicateHost),
	bad("duplicate host 1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", ErrDuplicateHost),
	bad("host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ErrBadHost),
	bad("host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", ErrBadHost),

	// framing
	bad("CL and TE", get11+"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBothCLAndTE),
	bad("TE and CL", get11+"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ErrBothCLAndTE),
	bad("CL differing", get11+"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", ErrBadContentLength),
	bad("CL list", get11+"Content-Length: 5, 5\r\n\r\n", ErrBadContentLength),
	bad("CL list differing", get11+"Content-Length: 5, 6\r\n\r\n", ErrBadContentLength),
	bad("CL plus", get11+"Content-Length: +5\r\n\r\n", ErrBadContentLength),
	bad("CL minus", get11+"Content-Length: -5\r\n\r\n", ErrBadContentLength),
	bad("CL hex", get11+"Content-Length: 0x5\r\n\r\n", ErrBadContentLength),
	bad("CL inner space", get11+"Content-Length: 1 2\r\n\r\n", ErrBadContentLength),
	bad("CL empty", get11+"Content-Length:\r\n\r\n", ErrBadContentLength),
	bad("CL overflow", get11+"Content-Length: 9223372036854775808\r\n\r\n", ErrBadContentLength),
	bad("CL 20 digits", get11+"Content-Length: 99999999999999999999\r\n\r\n", ErrBadContentLength),
	bad("CL letters", get11+"Content-Length: 5a\r\n\r\n", ErrBadContentLength),
	bad("TE gzip", get11+"Transfer-Encoding: gzip\r\n\r\n", ErrBadTransferEncoding),
	bad("TE chunked then gzip", get11+"Transfer-Encoding: chunked, gzip\r\n\r\n", ErrBadTransferEncoding),
	bad("TE chunked twice", get11+"Transfer-Encoding: chunked, chunked\r\n\r\n", ErrBadTransferEncoding),
	bad("TE chunked twice fields", get11+"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBadTransferEncoding),
	bad("TE gzip chunked", get11+"Transfer-Encoding: gzip, chunked\r\n\r\n", ErrUnknownCoding),
	bad("TE gzip chunked fields", get11+"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ErrUnknownCoding),
	bad("TE unknown", get11+"Transfer-Encoding: x-foo\r\n\r\n", ErrUnknownCoding),
	bad("TE unknown then chunked", get11+"Transfer-Encoding: x-foo, chunked\r\n\r\n", ErrUnknownCoding),
	bad("TE empty", get11+"Transfer-Encoding:\r\n\r\n", ErrBadTransferEncoding),
	bad("TE empty element", get11+"Transfer-Encoding: , chunked\r\n\r\n", ErrBadTransferEncoding),
	bad("TE trailing comma", get11+"Transfer-Encoding: chunked,\r\n\r\n", ErrBadTransferEncoding),
	bad("TE params", get11+"Transfer-Encoding: chunked;q=1\r\n\r\n", ErrBadTransferEncoding),
	bad("TE chunked-false", get11+"Transfer-Encoding: chunkedx\r\n\r\n", ErrUnknownCoding),
	bad("TE quoted", get11+"Transfer-Encoding: \"chunked\"\r\n\r\n", ErrBadTransferEncoding),
	bad("TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBadTransferEncoding),
	bad("trailer declares content-length", get11+"Trailer: X, Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBadTrailer),
	bad("TE vertical tab", get11+"Transfer-Encoding: \x0bchunked\r\n\r\n", ErrCtlChar),
}

func TestRequestParse(t *testing.T) {
	var r Request
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := r.Parse([]byte(tc.in), tc.lim)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Parse(%q) = %d, %v, want %v", tc.in, n, err, tc.err)
				}
				if n != 0 {
					t.Fatalf("Parse(%q) consumed %d with error %v", tc.in, n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want success", tc.in, err)
			}
			want := tc.n
			if want == 0 {
				want = len(tc.in)
			}
			host := "-"
			if r.Host != nil {
				host = string(r.Host)
			}
			got := fmt.Sprintf("n=%d %s %s 1.%d host=%s body=%v/%d ka=%v expect=%v upgrade=%v",
				n, r.Method, r.Target, r.Minor, host, r.Body.Kind, r.Body.Length, r.KeepAlive, r.Expect100, r.Upgrade)
			exp := fmt.Sprintf("n=%d %s %s 1.%d host=%s body=%v/%d ka=%v expect=%v upgrade=%v",
				want, tc.method, tc.target, tc.minor, tc.host, tc.body.Kind, tc.body.Length, tc.keepAlive, tc.expect, tc.upgrade)
			if got != exp {
				t.Fatalf("Parse(%q) = %s, want %s", tc.in, got, exp)
			}
		})
	}
}

func TestRequestCaseCount(t *testing.T) {
	if n := len(requestCases) + len(responseCases); n < 80 {
		t.Fatalf("only %d table cases", n)
	}
}

// TestRequestIncremental feeds every prefix of valid heads: each must say
// ErrNeedMore until the full head is there.
func TestRequestIncremental(t *testing.T) {
	var r Request
	for _, tc := range requestCases {
		if tc.err != nil || tc.lim != nil {
			continue
		}
		in := []byte(tc.in)
		full, err := r.Parse(in, nil)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", tc.in, err)
		}
		for i := 0; i < full; i++ {
			if n, err := r.Parse(in[:i], nil); err != ErrNeedMore {
				t.Fatalf("Parse(%q) = %d, %v, want ErrNeedMore", in[:i], n, err)
			}
		}
	}
}

func TestRequestFieldsAndGet(t *testing.T) {
	in := []byte("POST /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.2.3.4\r\nX-A:  spaced value \t\r\nx-forwarded-for: 5.6.7.8\r\n\r\n")
	var r Request
	if _, err := r.Parse(in, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, want string }{
		{"host", "example.com"},
		{"X-A", "spaced value"},
		{"x-forwarded-for", "1.2.3.4"},
		{"Missing", ""},
	}
	for _, tt := range tests {
		if got := r.Get(tt.name); string(got) != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	if r.Get("Missing") != nil {
		t.Errorf("Get(Missing) = non-nil")
	}
	if len(r.Fields) != 4 || r.XFF != 1 {
		t.Errorf("len(Fields) = %d, XFF = %d, want 4, 1", len(r.Fields), r.XFF)
	}
	// Aliasing: values are sub-slices of the input.
	v := r.Get("X-A")
	if &v[0] != &in[bytes.Index(in, []byte("spaced"))] {
		t.Errorf("Get(X-A) does not alias the input")
	}
	r.Reset()
	if r.Method != nil || len(r.Fields) != 0 || r.XFF != -1 {
		t.Errorf("Reset left %+v", r)
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0}, {ErrNeedMore, 0}, {ErrBadRequest, 400}, {ErrBothCLAndTE, 400}, {ErrBadChunk, 400},
		{ErrTargetTooLong, 414}, {ErrHeadTooLarge, 431}, {ErrTooManyFields, 431},
		{ErrUnknownCoding, 501}, {ErrBadVersion, 505}, {ErrBadStatusLine, 502},
		{fmt.Errorf("wrapped: %w", ErrTargetTooLong), 414},
		{fmt.Errorf("wrapped: %w", ErrObsFold), 400},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// Path is the target to forward in origin form (RFC 9112 section 3.2).
func TestRequestPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n", "/x?y"},
		{"GET http://a.example/x?y HTTP/1.1\r\nHost: a\r\n\r\n", "/x?y"},
		{"GET http://a.example HTTP/1.1\r\nHost: a\r\n\r\n", "/"},
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "*"},
		// The last proxy sends "*" for an OPTIONS with an empty path
		// (RFC 9112 section 3.2.4).
		{"OPTIONS http://a.example:8001 HTTP/1.1\r\nHost: a\r\n\r\n", "*"},
		{"OPTIONS http://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", "/"},
		// An empty path before a query is sent as "/" (RFC 9112
		// section 3.2.1), for OPTIONS too (section 3.2.4: "*" only
		// without a query).
		{"GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n", "/?x"},
		{"GET http://a.example:8080? HTTP/1.1\r\nHost: a\r\n\r\n", "/?"},
		{"OPTIONS http://a.example?x HTTP/1.1\r\nHost: a\r\n\r\n", "/?x"},
	} {
		var r Request
		if _, err := r.Parse([]byte(tc.in), nil); err != nil || string(r.Path) != tc.want {
			t.Errorf("Parse(%q): Path = %q, %v, want %q", tc.in, r.Path, err, tc.want)
		}
	}
}

// Release drops the origin form Parse built for "http://h?q", and Parse
// builds it again afterwards.
func TestRequestRelease(t *testing.T) {
	var r Request
	in := []byte("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := r.Parse(in, nil); err != nil || string(r.Path) != "/?x" || cap(r.pathBuf) == 0 {
		t.Fatalf("Parse(%q): Path %q, scratch cap %d, %v", in, r.Path, cap(r.pathBuf), err)
	}
	r.Release()
	if r.Path != nil || r.pathBuf != nil {
		t.Fatalf("after Release: Path %q, scratch cap %d, want none", r.Path, cap(r.pathBuf))
	}
	if _, err := r.Parse(in, nil); err != nil || string(r.Path) != "/?x" {
		t.Fatalf("Parse(%q) after Release: Path %q, %v", in, r.Path, err)
	}
}
