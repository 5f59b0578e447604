package codec

import "testing"

func TestValueHasTokenParseContentLength(t *testing.T) {
	var r Request
	head := "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nUpgrade: h2c, WebSocket\r\n\r\n"
	if _, err := r.Parse([]byte(head), nil); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"1.1.1.1", "2.2.2.2", ""} {
		if got := string(r.Value("X-Forwarded-For", i)); got != want {
			t.Errorf("Value(X-Forwarded-For, %d) = %q, want %q", i, got, want)
		}
	}
	for _, tc := range []struct {
		v, tok string
		want   bool
	}{
		{"h2c, WebSocket", "websocket", true},
		{"h2c,websocket/13", "websocket", false},
		{"", "websocket", false},
		{"notwebsocket", "websocket", false},
	} {
		if got := HasToken([]byte(tc.v), tc.tok); got != tc.want {
			t.Errorf("HasToken(%q, %q) = %v, want %v", tc.v, tc.tok, got, tc.want)
		}
	}
	if n, ok := ParseContentLength([]byte("1234")); !ok || n != 1234 {
		t.Errorf("ParseContentLength(1234) = %d, %v", n, ok)
	}
	if _, ok := ParseContentLength([]byte("+1")); ok {
		t.Error("ParseContentLength(+1) accepted")
	}
	if a := testing.AllocsPerRun(100, func() { r.Value("X-Forwarded-For", 1); HasToken(r.Get("Upgrade"), "websocket") }); a != 0 {
		t.Errorf("Value/HasToken allocate %v times", a)
	}
}
