package codec

import (
	"testing"
)

// browserHead is a typical ~500-byte browser request head with 12 fields.
var browserHead = []byte("GET /static/app/main.3f2a9c.js?v=1700000000 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/products/widgets?page=2\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"Content-Length: 0\r\n" +
	"\r\n")

// absQuery's origin form "/?v=1" is built in the Request's scratch.
var absQuery = []byte("GET http://www.example.com?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")

var typicalResponse = []byte("HTTP/1.1 200 OK\r\n" +
	"Date: Mon, 27 Jul 2025 12:28:53 GMT\r\n" +
	"Server: nginx/1.25.3\r\n" +
	"Content-Type: application/javascript; charset=utf-8\r\n" +
	"Cache-Control: public, max-age=31536000, immutable\r\n" +
	"ETag: \"65a1b2c3-1f40\"\r\n" +
	"Last-Modified: Fri, 12 Jan 2024 08:00:00 GMT\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Transfer-Encoding: chunked\r\n" +
	"\r\n")

var chunkedBody = []byte("400\r\n" + string(make([]byte, 1024)) + "\r\n" +
	"200;ext=1\r\n" + string(make([]byte, 512)) + "\r\n" +
	"0\r\nX-Checksum: abc\r\n\r\n")

func TestParseZeroAlloc(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	var r Request
	var resp Response
	var b Body
	dst := make([]byte, 0, 4096)
	opts := &HeadOptions{Framing: cl(0), Drop: []string{"X-Forwarded-For"}, Extra: []Field{{[]byte("X-Forwarded-For"), []byte("10.0.0.1")}}}
	if n, err := r.Parse(browserHead, nil); err != nil || n != len(browserHead) || len(r.Fields) != 12 {
		t.Fatalf("Parse(browserHead) = %d, %v, %d fields", n, err, len(r.Fields))
	}
	tests := []struct {
		name string
		f    func()
	}{
		{"Request.Parse", func() { r.Parse(browserHead, nil) }},
		{"Request.Parse absolute-form query", func() { r.Parse(absQuery, nil) }},
		{"Request.Get", func() { r.Get("Content-Length"); r.Get("transfer-encoding"); r.Get("Host") }},
		{"Response.Parse", func() { resp.Parse(typicalResponse, nil, false) }},
		{"Body.Step length", func() { b.Reset(r.Body, ModeForward); b.Step(dst[:0], browserHead) }},
		{"Body.Step chunked dechunk", func() { b.Reset(chunked, ModeDechunk); b.Step(dst[:0], chunkedBody) }},
		{"Body.Step chunked rechunk", func() { b.Reset(chunked, ModeRechunk); b.Step(dst[:0], chunkedBody) }},
		{"AppendRequestHead", func() { AppendRequestHead(dst[:0], &r, opts) }},
		{"AppendResponseHead", func() { AppendResponseHead(dst[:0], &resp, opts) }},
		{"parse and frame", func() {
			n, _ := r.Parse(browserHead, nil)
			b.Reset(r.Body, ModeForward)
			b.Step(dst[:0], browserHead[n:])
		}},
	}
	for _, tt := range tests {
		if a := testing.AllocsPerRun(200, tt.f); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, a)
		}
	}
}
