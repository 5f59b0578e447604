package codec

import "testing"

func TestAppendRequestHead(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opts *HeadOptions
		want string
	}{
		{
			name: "hop-by-hop removed, framing replaced",
			in: "POST /p HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\n" +
				"Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nContent-Length: 3\r\nX-End: e\r\n\r\n",
			opts: &HeadOptions{Framing: cl(3)},
			want: "POST /p HTTP/1.1\r\nHost: a\r\nX-End: e\r\nContent-Length: 3\r\n\r\n",
		},
		{
			name: "chunked kept as one clean field",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
			opts: &HeadOptions{Framing: chunked, Close: true},
			want: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
		},
		{
			name: "drop and extra",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n",
			opts: &HeadOptions{Drop: []string{"X-FORWARDED-FOR"}, Extra: []Field{{[]byte("X-Forwarded-For"), []byte("1.2.3.4")}, {[]byte("Via"), []byte("1.1 pace")}}},
			want: "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.1 pace\r\n\r\n",
		},
		{
			name: "upgrade kept",
			in:   "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
			opts: &HeadOptions{Upgrade: true},
			want: "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\n\r\n",
		},
		{
			name: "connection cannot drop host",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nConnection: host, keep-alive\r\n\r\n",
			opts: &HeadOptions{KeepAlive: true},
			want: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		},
		{
			name: "absolute form to origin form",
			in:   "GET http://b.example/x?y=1 HTTP/1.1\r\nAccept: */*\r\nHost: a.example\r\n\r\n",
			opts: &HeadOptions{},
			want: "GET /x?y=1 HTTP/1.1\r\nHost: b.example\r\nAccept: */*\r\n\r\n",
		},
		{
			name: "absolute form without path",
			in:   "GET http://b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
		},
		{
			// RFC 9112 section 3.2.1: an empty path is sent as "/".
			name: "absolute form with a query and no path",
			in:   "GET http://b.example:8080?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
			want: "GET /?q=1 HTTP/1.1\r\nHost: b.example:8080\r\n\r\n",
		},
		{
			name: "drop underscore names",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\nmy_key: k\r\n\r\n",
			opts: &HeadOptions{DropUnderscore: true},
			want: "GET / HTTP/1.1\r\nHost: a\r\nX-Ok: 1\r\n\r\n",
		},
		{
			name: "keep underscore names",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nmy_key: k\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\nmy_key: k\r\n\r\n",
		},
		{
			// RFC 9112 section 3.2.4: the last proxy sends "OPTIONS *".
			name: "options absolute form without path",
			in:   "OPTIONS http://b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
			want: "OPTIONS * HTTP/1.1\r\nHost: b.example\r\n\r\n",
		},
		{
			name: "nil options",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		},
	}
	var r Request
	for _, tt := range tests {
		if _, err := r.Parse([]byte(tt.in), nil); err != nil {
			t.Fatalf("%s: Parse(%q) = %v", tt.name, tt.in, err)
		}
		if got := string(AppendRequestHead(nil, &r, tt.opts)); got != tt.want {
			t.Errorf("%s: AppendRequestHead(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
		// The output is itself a valid head.
		var r2 Request
		out := AppendRequestHead([]byte("prefix"), &r, tt.opts)[len("prefix"):]
		if n, err := r2.Parse(out, nil); err != nil || n != len(out) {
			t.Errorf("%s: re-Parse(%q) = %d, %v", tt.name, out, n, err)
		}
	}
}

// RFC 9112 section 5.1: a proxy removes whitespace between a response
// field's name and its colon before forwarding.
func TestAppendResponseHeadSpaceBeforeColon(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nX-Info  : 1\r\nContent-Length: 2\r\n\r\n"
	var r Response
	if _, err := r.Parse([]byte(in), nil, false); err != nil {
		t.Fatalf("Parse(%q) = %v, want success", in, err)
	}
	got := string(AppendResponseHead(nil, &r, &HeadOptions{Framing: r.Body}))
	if want := "HTTP/1.1 200 OK\r\nX-Info: 1\r\nContent-Length: 2\r\n\r\n"; got != want {
		t.Errorf("AppendResponseHead(%q) = %q, want %q", in, got, want)
	}
}

func TestAppendResponseHead(t *testing.T) {
	in := "HTTP/1.0 404 Not Found\r\nServer: s\r\nConnection: close\r\nContent-Length: 9\r\nTransfer-Encoding: x\r\n\r\n"
	var r Response
	r.Fields = append(r.Fields, Field{}) // reused scratch must not leak
	if _, err := r.Parse([]byte(in[:len(in)-len("Transfer-Encoding: x\r\n\r\n")]+"\r\n"), nil, false); err != nil {
		t.Fatal(err)
	}
	got := string(AppendResponseHead(nil, &r, &HeadOptions{Framing: chunked}))
	if want := "HTTP/1.1 404 Not Found\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n"; got != want {
		t.Errorf("AppendResponseHead = %q, want %q", got, want)
	}
	var zero Response
	if got, want := string(AppendResponseHead(nil, &zero, nil)), "HTTP/1.1 500 \r\n\r\n"; got != want {
		t.Errorf("AppendResponseHead(zero) = %q, want %q", got, want)
	}
}
