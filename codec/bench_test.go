package codec

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

func BenchmarkParseRequest(b *testing.B) {
	var r Request
	b.SetBytes(int64(len(browserHead)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(browserHead, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetHTTPReadRequest is the baseline: net/http on the same input.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	rd := bytes.NewReader(browserHead)
	br := bufio.NewReader(rd)
	b.SetBytes(int64(len(browserHead)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(browserHead)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	var r Response
	b.SetBytes(int64(len(typicalResponse)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(typicalResponse, nil, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNetHTTPReadResponse(b *testing.B) {
	rd := bytes.NewReader(typicalResponse)
	br := bufio.NewReader(rd)
	b.SetBytes(int64(len(typicalResponse)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(typicalResponse)
		br.Reset(rd)
		if _, err := http.ReadResponse(br, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequestHead(b *testing.B) {
	var r Request
	if _, err := r.Parse(browserHead, nil); err != nil {
		b.Fatal(err)
	}
	opts := &HeadOptions{Framing: r.Body, Drop: []string{"X-Forwarded-For"},
		Extra: []Field{{[]byte("X-Forwarded-For"), []byte("10.0.0.1")}, {[]byte("Via"), []byte("1.1 pace")}}}
	dst := make([]byte, 0, 2048)
	b.SetBytes(int64(len(browserHead)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendRequestHead(dst[:0], &r, opts)
	}
}

func BenchmarkBodyChunked(b *testing.B) {
	for _, m := range []struct {
		name string
		mode BodyMode
	}{{"forward", ModeForward}, {"dechunk", ModeDechunk}, {"rechunk", ModeRechunk}} {
		b.Run(m.name, func(b *testing.B) {
			var body Body
			dst := make([]byte, 0, 4096)
			b.SetBytes(int64(len(chunkedBody)))
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(chunked, m.mode)
				if _, n, done, err := body.Step(dst[:0], chunkedBody); err != nil || !done || n != len(chunkedBody) {
					b.Fatal(n, done, err)
				}
			}
		})
	}
}
