package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestBackendMisbehaviour makes the backend break the protocol in one way
// per case and checks that the client gets a correct response or a 502 (a
// 504 for a silent backend), never a truncated response that looks
// complete, and that pace never reuses a backend connection it has reason
// to doubt (RFC 9112 6.3 p5, 9.6): the next request must arrive on a fresh
// backend connection and get its own response.
func TestBackendMisbehaviour(t *testing.T) {
	requireProxy(t)
	t.Parallel()
	be := startBackend(t)
	// One worker so that a reused connection would be reused by the next
	// request from the same client.
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, Workers: 1, ResponseTimeout: "1s"})

	tests := []struct {
		mode    string
		method  string
		status  []int  // acceptable statuses
		body    string // required body for a 200 ("" means none)
		reuseOK bool   // the backend response was valid: pace may reuse the connection
	}{
		{modeGarbageStatus, "GET", []int{502}, "", false},
		{modeCLAndChunked, "GET", []int{200, 502}, "hello", false},
		{modeTwoCL, "GET", []int{502}, "", false},
		{modeCloseMidBody, "GET", []int{200, 502}, "", false},
		{modeTrailingBytes, "GET", []int{200, 502}, "hello", false},
		{modeHeadCL, "HEAD", []int{200}, "", true},
		{modeHeadCLBody, "HEAD", []int{200, 502}, "", false},
		{mode204Body, "GET", []int{204, 502}, "", false},
		{mode304Body, "GET", []int{304, 502}, "", false},
		{modeMany1xx, "GET", []int{200}, "path=/mode/many-1xx/", true},
		{modeBigHead, "GET", []int{502}, "", false},
		{modeHang, "GET", []int{504}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			marker := newMarker()
			conn, err := net.Dial("tcp", px.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			req := fmt.Sprintf("%s /mode/%s/%s HTTP/1.1\r\nHost: e2e\r\n\r\n", tt.method, tt.mode, marker)
			r, err := roundTrip(conn, br, []byte(req), tt.method, 5*time.Second)
			if err != nil {
				t.Fatalf("%q: no response: %v", req, err)
			}
			if !containsInt(tt.status, r.Status) {
				t.Errorf("%q with backend mode %s: got %v, want status %v", req, tt.mode, r, tt.status)
			}
			clientOpen := !r.Close
			switch {
			case tt.mode == modeCloseMidBody && r.Status == 200:
				// Headers went out before the backend died: the client
				// must see the truncation and the connection must close.
				if r.BodyErr == nil {
					t.Errorf("%s: client got a complete-looking 200 with body %q from a backend that closed mid-body", tt.mode, r.Body)
				}
				clientOpen = false
			case r.BodyErr != nil:
				t.Errorf("%s: response %v: body error %v", tt.mode, r, r.BodyErr)
			case r.Status == 200 && !strings.Contains(string(r.Body), tt.body):
				t.Errorf("%s: 200 body %q, want it to contain %q", tt.mode, r.Body, tt.body)
			case r.Status == 200 && tt.body == "" && len(r.Body) > 0, r.Status == 204 && len(r.Body) > 0, r.Status == 304 && len(r.Body) > 0:
				t.Errorf("%s: %d with body %q, want none", tt.mode, r.Status, r.Body)
			}
			if tt.mode == modeCloseMidBody && r.Status == 200 {
				if err := expectClosed(conn, br, 2*time.Second); err != nil {
					t.Errorf("%s: client connection after a truncated response: %v", tt.mode, err)
				}
			}
			bad := be.WithMarker(marker)
			if len(bad) == 0 {
				t.Fatalf("%s: backend never received %q", tt.mode, req)
			}

			// The follow-up, on the same client connection when it is
			// still open.
			next := newMarker()
			if clientOpen {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Write([]byte("GET /after/" + next + " HTTP/1.1\r\nHost: e2e\r\n\r\n")); err != nil {
					clientOpen = false
				} else if r2, err := readResponse(br, "GET"); err == nil {
					checkFollowUp(t, tt.mode, r2, next)
				} else {
					clientOpen = false
				}
			}
			if !clientOpen {
				c2, err := net.Dial("tcp", px.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c2.Close()
				r2, err := roundTrip(c2, bufio.NewReader(c2), []byte("GET /after/"+next+" HTTP/1.1\r\nHost: e2e\r\n\r\n"), "GET", 5*time.Second)
				if err != nil {
					t.Fatalf("%s: follow-up request: %v", tt.mode, err)
				}
				checkFollowUp(t, tt.mode, r2, next)
			}
			time.Sleep(50 * time.Millisecond)
			if tt.reuseOK {
				return
			}
			for _, m := range bad {
				later := be.OnConn(m.Conn)
				if n := len(later); n > m.N {
					t.Errorf("%s: pace reused backend connection %d after a doubtful response; it then sent %s", tt.mode, m.Conn, quote(later[m.N].Raw, 200))
				}
			}
		})
	}
	if !px.Alive() {
		t.Fatalf("pace died; output:\n%s", px.out)
	}
	px.Stop(t)
}

func checkFollowUp(t *testing.T, mode string, r *response, marker string) {
	t.Helper()
	if r.Status != 200 || !bytes.Contains(r.Body, []byte("path=/after/"+marker)) {
		t.Errorf("after backend mode %s: GET /after/%s got %v, want 200 with its own body (desync)", mode, marker, r)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
