package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	errNoBackends = errors.New("no backends")
	errBadBackend = errors.New("backend must be an http://host:port URL")
)

// parseBackends parses a comma-separated list of http://host:port URLs.
func parseBackends(list string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%w: %q", errBadBackend, s)
		}
		u.Path = ""
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errNoBackends
	}
	return out, nil
}

// bufferPool implements httputil.BufferPool with 32 KiB buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// newProxy returns a ReverseProxy that round-robins over backends, adds
// X-Proxy: proxyHeader and X-Forwarded-* on the way in and X-Backend on
// the way out.
func newProxy(backends []*url.URL, proxyHeader string, tr http.RoundTripper, errLog *log.Logger) *httputil.ReverseProxy {
	var next atomic.Uint64
	xproxy := []string{proxyHeader}
	xbackend := make(map[string][]string, len(backends))
	for _, b := range backends {
		xbackend[b.Host] = []string{b.Host}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			b := backends[(next.Add(1)-1)%uint64(len(backends))]
			pr.SetURL(b)
			pr.Out.Host = pr.In.Host
			// Rewrite strips X-Forwarded-For before calling us; put the
			// incoming list back so SetXForwarded appends to it.
			if v := pr.In.Header["X-Forwarded-For"]; v != nil {
				pr.Out.Header["X-Forwarded-For"] = v
			}
			pr.SetXForwarded()
			pr.Out.Header["X-Proxy"] = xproxy
		},
		ModifyResponse: func(resp *http.Response) error {
			if v, ok := xbackend[resp.Request.URL.Host]; ok {
				resp.Header["X-Backend"] = v
			}
			return nil
		},
		Transport:  tr,
		BufferPool: &bufferPool{},
		ErrorLog:   errLog,
	}
}

// newTransport returns a keep-alive HTTP/1.1 transport sized for load tests.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no overall limit
		MaxIdleConnsPerHost:   4096,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	list := flag.String("backends", "http://127.0.0.1:8000,http://127.0.0.1:8001", "comma-separated backend URLs")
	proxyHeader := flag.String("proxy-header", "pace", "value of the X-Proxy header sent to backends")
	quiet := flag.Bool("quiet", false, "print nothing: no startup line, no error log")
	flag.Parse()

	backends, err := parseBackends(*list)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refproxy: %v\n", err)
		os.Exit(2)
	}
	errLog := log.New(os.Stderr, "refproxy: ", log.LstdFlags)
	if *quiet {
		errLog = log.New(io.Discard, "", 0)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refproxy: %v\n", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           newProxy(backends, *proxyHeader, newTransport(), errLog),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          errLog,
	}
	if !*quiet {
		fmt.Printf("refproxy listening on %s, backends %s\n", ln.Addr(), *list)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "refproxy: %v\n", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}
