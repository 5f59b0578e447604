package main

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestParseBackends(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{"http://127.0.0.1:8000,http://127.0.0.1:8001", []string{"127.0.0.1:8000", "127.0.0.1:8001"}, nil},
		{" http://a:1/ , ", []string{"a:1"}, nil},
		{"", nil, errNoBackends},
		{"https://a:1", nil, errBadBackend},
		{"http://a:1/x", nil, errBadBackend},
		{"127.0.0.1:8000", nil, errBadBackend},
	}
	for _, tt := range tests {
		got, err := parseBackends(tt.in)
		var hosts []string
		for _, u := range got {
			hosts = append(hosts, u.Host)
		}
		if !errors.Is(err, tt.wantErr) || strings.Join(hosts, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parseBackends(%q) = %v, %v, want %v, %v", tt.in, hosts, err, tt.want, tt.wantErr)
		}
	}
}

// recordingBackend answers with its name and remembers what it received.
func recordingBackend(t *testing.T, name string, seen chan<- http.Header) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestProxyRoundRobinAndHeaders(t *testing.T) {
	seen := make(chan http.Header, 16)
	b1 := recordingBackend(t, "b1", seen)
	b2 := recordingBackend(t, "b2", seen)
	u1, _ := url.Parse(b1.URL)
	u2, _ := url.Parse(b2.URL)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	p := httptest.NewServer(newProxy([]*url.URL{u1, u2}, "pace", tr, log.New(io.Discard, "", 0)))
	defer p.Close()

	wantNames := []string{"b1", "b2", "b1", "b2"}
	wantHosts := []string{u1.Host, u2.Host, u1.Host, u2.Host}
	for i := range wantNames {
		req, _ := http.NewRequest("GET", p.URL+"/", nil)
		req.Header.Set("X-Forwarded-For", "10.1.2.3")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != wantNames[i] || resp.Header.Get("X-Backend") != wantHosts[i] {
			t.Errorf("request %d: body %q, X-Backend %q, want %q, %q", i, body, resp.Header.Get("X-Backend"), wantNames[i], wantHosts[i])
		}
		h := <-seen
		if got := h.Get("X-Proxy"); got != "pace" {
			t.Errorf("request %d: backend saw X-Proxy %q, want %q", i, got, "pace")
		}
		if got, want := h.Get("X-Forwarded-For"), "10.1.2.3, 127.0.0.1"; got != want {
			t.Errorf("request %d: backend saw X-Forwarded-For %q, want %q", i, got, want)
		}
	}
}

func TestProxyBackendDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(dead.URL)
	dead.Close()
	p := httptest.NewServer(newProxy([]*url.URL{u}, "pace", newTransport(), log.New(io.Discard, "", 0)))
	defer p.Close()
	resp, err := http.Get(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET via proxy to a closed backend = %d, want 502", resp.StatusCode)
	}
}

func TestBufferPool(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != 32<<10 {
		t.Fatalf("Get() returned %d bytes, want %d", len(b), 32<<10)
	}
	p.Put(b)
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n > 1 {
		t.Errorf("Put(Get()) allocs = %v, want <= 1", n)
	}
}

func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	p := httptest.NewServer(newProxy([]*url.URL{u}, "pace", tr, log.New(io.Discard, "", 0)))
	defer p.Close()
	ctr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer ctr.CloseIdleConnections()
	c := &http.Client{Transport: ctr}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(p.URL)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
