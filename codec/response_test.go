package codec

import (
	"errors"
	"fmt"
	"testing"
)

type respCase struct {
	name      string
	in        string
	method    string // request method; "" means GET
	err       error
	status    int
	reason    string
	minor     int
	body      Framing
	keepAlive bool
}

var closeBody = Framing{Kind: BodyClose}

func rok(name, in string, status int, body Framing, keepAlive bool) respCase {
	return respCase{name: name, in: in, status: status, reason: "OK", minor: 1, body: body, keepAlive: keepAlive}
}

func rbad(name, in string, err error) respCase { return respCase{name: name, in: in, err: err} }

var responseCases = []respCase{
	rok("content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, cl(5), true),
	rok("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, chunked, true),
	rok("read until close", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", 200, closeBody, false),
	rok("connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", 200, cl(1), false),
	rok("204 no body", "HTTP/1.1 204 OK\r\n\r\n", 204, Framing{}, true),
	rok("304 with CL", "HTTP/1.1 304 OK\r\nContent-Length: 99\r\n\r\n", 304, Framing{}, true),
	rok("100 continue", "HTTP/1.1 100 OK\r\n\r\n", 100, Framing{}, true),
	rok("101 switching", "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 101, Framing{}, true),
	{name: "HEAD with CL", in: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", method: "HEAD", status: 200, reason: "OK", minor: 1, keepAlive: true},
	{name: "HEAD with TE", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", method: "HEAD", status: 200, reason: "OK", minor: 1, keepAlive: true},
	{name: "HEAD no framing", in: "HTTP/1.1 200 OK\r\n\r\n", method: "HEAD", status: 200, reason: "OK", minor: 1, keepAlive: true},
	{name: "CONNECT 200", in: "HTTP/1.1 200 Connection established\r\n\r\n", method: "CONNECT", status: 200, reason: "Connection established", minor: 1, keepAlive: true},
	{name: "CONNECT 407", in: "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", method: "CONNECT", status: 407, reason: "Auth", minor: 1, body: cl(2), keepAlive: true},
	{name: "http/1.0 default close", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", status: 200, reason: "OK", body: cl(2)},
	{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", status: 200, reason: "OK", body: cl(2), keepAlive: true},
	{name: "empty reason", in: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", status: 404, minor: 1, body: cl(0), keepAlive: true},
	{name: "no reason no space", in: "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", status: 500, minor: 1, body: cl(0), keepAlive: true},
	{name: "reason with spaces", in: "HTTP/1.1 503 Service  Unavailable\r\nContent-Length: 0\r\n\r\n", status: 503, reason: "Service  Unavailable", minor: 1, body: cl(0), keepAlive: true},

	rbad("incomplete", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", ErrNeedMore),
	rbad("incomplete line", "HTTP/1.1 2", ErrNeedMore),
	rbad("garbage early", "<html>", ErrBadStatusLine),
	rbad("lowercase", "http/1.1 200 OK\r\n\r\n", ErrBadStatusLine),
	rbad("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", ErrBadVersion),
	rbad("two digit status", "HTTP/1.1 20 OK\r\n\r\n", ErrBadStatusLine),
	rbad("status 099", "HTTP/1.1 099 OK\r\n\r\n", ErrBadStatusLine),
	rbad("status letters", "HTTP/1.1 2x0 OK\r\n\r\n", ErrBadStatusLine),
	rbad("four digit status", "HTTP/1.1 2000 OK\r\n\r\n", ErrBadStatusLine),
	rbad("ctl in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", ErrCtlChar),
	rbad("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", ErrBareLF),
	rbad("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBothCLAndTE),
	rbad("CL and TE on 204", "HTTP/1.1 204 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBothCLAndTE),
	rbad("CL differing", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", ErrBadContentLength),
	rbad("CL negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ErrBadContentLength),
	rbad("TE gzip only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", ErrBadTransferEncoding),
	rbad("TE unknown", "HTTP/1.1 200 OK\r\nTransfer-Encoding: x-foo\r\n\r\n", ErrUnknownCoding),
	rbad("TE on 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ErrBadTransferEncoding),
	rbad("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", ErrObsFold),
	rbad("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", ErrSpaceBeforeColon),
	rbad("space before colon TE", "HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n", ErrSpaceBeforeColon),
	rbad("space, no colon", "HTTP/1.1 200 OK\r\nX-Info 1\r\n\r\n", ErrBadFieldName),
	rbad("space before colon, empty name", "HTTP/1.1 200 OK\r\n : 1\r\n\r\n", ErrObsFold),
	rok("space before colon, ordinary field", "HTTP/1.1 200 OK\r\nX-Info  : 1\r\nContent-Length: 2\r\n\r\n", 200, cl(2), true),
	rbad("tab before colon", "HTTP/1.1 200 OK\r\nX-Info\t: 1\r\nContent-Length: 2\r\n\r\n", ErrSpaceBeforeColon),
	rbad("bare CR value", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", ErrBareCR),
}

func TestResponseParse(t *testing.T) {
	var r Response
	for _, tc := range responseCases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := r.ParseMethod([]byte(tc.in), nil, []byte(tc.method))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Parse(%q) = %d, %v, want %v", tc.in, n, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want success", tc.in, err)
			}
			got := fmt.Sprintf("n=%d 1.%d %d %q body=%v/%d ka=%v", n, r.Minor, r.Status, r.Reason, r.Body.Kind, r.Body.Length, r.KeepAlive)
			exp := fmt.Sprintf("n=%d 1.%d %d %q body=%v/%d ka=%v", len(tc.in), tc.minor, tc.status, tc.reason, tc.body.Kind, tc.body.Length, tc.keepAlive)
			if got != exp {
				t.Fatalf("Parse(%q) = %s, want %s", tc.in, got, exp)
			}
			// Parse(head) agrees with ParseMethod for HEAD and GET.
			if tc.method == "" || tc.method == "HEAD" {
				var r2 Response
				if _, err := r2.Parse([]byte(tc.in), nil, tc.method == "HEAD"); err != nil || r2.Body != r.Body {
					t.Fatalf("Parse(%q, head=%v) = %v, %v, want %v", tc.in, tc.method == "HEAD", r2.Body, err, r.Body)
				}
			}
		})
	}
}

func TestResponseIncremental(t *testing.T) {
	var r Response
	for _, tc := range responseCases {
		if tc.err != nil {
			continue
		}
		in := []byte(tc.in)
		for i := 0; i < len(in); i++ {
			if n, err := r.ParseMethod(in[:i], nil, []byte(tc.method)); err != ErrNeedMore {
				t.Fatalf("Parse(%q) = %d, %v, want ErrNeedMore", in[:i], n, err)
			}
		}
	}
}

func TestResponseGet(t *testing.T) {
	var r Response
	if _, err := r.Parse([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n"), nil, false); err != nil {
		t.Fatal(err)
	}
	if got := r.Get("content-type"); string(got) != "text/plain" {
		t.Errorf("Get(content-type) = %q, want %q", got, "text/plain")
	}
	if got := r.Get("X"); got != nil {
		t.Errorf("Get(X) = %q, want nil", got)
	}
}
