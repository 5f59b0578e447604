package codec

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// framingErr reports whether a net/http error is about message framing.
func framingErr(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "content-length") || strings.Contains(s, "transfer encoding") ||
		strings.Contains(s, "transfer-encoding") || strings.Contains(s, "chunked")
}

func FuzzRequest(f *testing.F) {
	for _, tc := range requestCases {
		f.Add([]byte(tc.in))
	}
	f.Add(browserHead)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		n, err := r.Parse(data, nil)
		if n < 0 || n > len(data) || (err != nil && n != 0) || (err == nil && n == 0) {
			t.Fatalf("Parse(%q) = %d, %v", data, n, err)
		}
		if err != nil {
			if StatusOf(err) == 0 && err != ErrNeedMore {
				t.Fatalf("Parse(%q) error %v has no status", data, err)
			}
			return
		}
		// Our own output must parse again to the same framing.
		opts := &HeadOptions{Framing: r.Body, Close: !r.KeepAlive, Upgrade: r.Upgrade}
		out := AppendRequestHead(nil, &r, opts)
		var r2 Request
		if r.Host == nil {
			out = AppendRequestHead(nil, &r, &HeadOptions{Framing: r.Body, Extra: []Field{{[]byte("Host"), []byte("x")}}})
		}
		if _, err := r2.Parse(out, nil); err != nil || r2.Body != r.Body {
			t.Fatalf("AppendRequestHead(%q) = %q, which parses to %v, %v, want %v", data, out, r2.Body, err, r.Body)
		}

		// Agreement with net/http on the same head.
		req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:n])))
		if herr != nil {
			if framingErr(herr) {
				t.Fatalf("Parse(%q) accepted %v, net/http rejects: %v", data[:n], r.Body, herr)
			}
			return
		}
		switch r.Body.Kind {
		case BodyChunked:
			if len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
				t.Fatalf("Parse(%q) = chunked, net/http: TE %q CL %d", data[:n], req.TransferEncoding, req.ContentLength)
			}
		case BodyLength, BodyNone:
			if req.TransferEncoding != nil || req.ContentLength != r.Body.Length {
				t.Fatalf("Parse(%q) = %v/%d, net/http: TE %q CL %d", data[:n], r.Body.Kind, r.Body.Length, req.TransferEncoding, req.ContentLength)
			}
		}
	})
}

func FuzzResponse(f *testing.F) {
	for _, tc := range responseCases {
		f.Add([]byte(tc.in), tc.method == "HEAD")
	}
	f.Add(typicalResponse, false)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		var r Response
		n, err := r.Parse(data, nil, head)
		if n < 0 || n > len(data) || (err != nil && n != 0) || (err == nil && n == 0) {
			t.Fatalf("Parse(%q) = %d, %v", data, n, err)
		}
		if err != nil {
			return
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data[:n])), &http.Request{Method: method})
		if herr != nil {
			if framingErr(herr) {
				t.Fatalf("Parse(%q) accepted %v, net/http rejects: %v", data[:n], r.Body, herr)
			}
			return
		}
		chunkedTE := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		switch r.Body.Kind {
		case BodyChunked:
			if !chunkedTE {
				t.Fatalf("Parse(%q) = chunked, net/http: TE %q CL %d", data[:n], resp.TransferEncoding, resp.ContentLength)
			}
		case BodyLength:
			if chunkedTE || resp.ContentLength != r.Body.Length {
				t.Fatalf("Parse(%q) = length %d, net/http: TE %q CL %d", data[:n], r.Body.Length, resp.TransferEncoding, resp.ContentLength)
			}
		case BodyClose:
			if chunkedTE || resp.ContentLength != -1 {
				t.Fatalf("Parse(%q) = close, net/http: TE %q CL %d", data[:n], resp.TransferEncoding, resp.ContentLength)
			}
		case BodyNone:
			if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
				t.Fatalf("Parse(%q) = none, net/http read a body of %d bytes", data[:n], len(b))
			}
		}
	})
}

func FuzzChunked(f *testing.F) {
	f.Add([]byte(chunkedSrc), uint16(3))
	f.Add(chunkedBody, uint16(100))
	f.Add([]byte("0\r\n\r\n"), uint16(1))
	f.Add([]byte("5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n"), uint16(9))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		c := min(int(cut), len(data))
		var outs [3][]byte
		var ns [3]int
		var errs [3]error
		var dones [3]bool
		for mode := range 3 {
			outs[mode], ns[mode], dones[mode], errs[mode] = runBody(chunked, BodyMode(mode), data, c)
			if ns[mode] > len(data) {
				t.Fatalf("Step(%q) consumed %d > %d", data, ns[mode], len(data))
			}
		}
		// All modes see the same framing.
		for mode := 1; mode < 3; mode++ {
			if ns[mode] != ns[0] || dones[mode] != dones[0] || errs[mode] != errs[0] {
				t.Fatalf("Step(%q): mode %d = %d, %v, %v; forward = %d, %v, %v", data, mode, ns[mode], dones[mode], errs[mode], ns[0], dones[0], errs[0])
			}
		}
		// A one-piece run agrees with the split run.
		if o, n, d, e := runBody(chunked, ModeDechunk, data); n != ns[1] || d != dones[1] || e != errs[1] || !bytes.Equal(o, outs[1]) {
			t.Fatalf("Step(%q) split at %d differs from one piece", data, c)
		}
		if !dones[0] {
			return
		}
		// Rechunked output decodes to the same payload.
		if o, _, d, e := runBody(chunked, ModeDechunk, outs[2]); !d || e != nil || !bytes.Equal(o, outs[1]) {
			t.Fatalf("rechunk(%q) = %q does not decode back: %v %v", data, outs[2], d, e)
		}
		// net/http reads the same payload from the same bytes.
		msg := append([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), data[:ns[0]]...)
		// A reader big enough that net/http's 4 KiB trailer heuristic is moot.
		req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(msg), len(msg)+16))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("Step(%q) accepted, net/http rejects: %v", data[:ns[0]], err)
		}
		if !bytes.Equal(body, outs[1]) {
			t.Fatalf("Step(%q) payload %q, net/http %q", data[:ns[0]], outs[1], body)
		}
	})
}
