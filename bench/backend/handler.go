package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Pattern is the repeating alphabet of /bytes: byte i of the body is
// Pattern[i%len(Pattern)].
const Pattern = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// Limits on the test endpoints' parameters.
const (
	maxDelayMS  = 600_000
	maxBytes    = 1 << 40
	maxEchoBody = 64 << 20
)

var (
	errBadParam = errors.New("bad query parameter")
	errTooLarge = errors.New("request body too large")
)

// Precomputed header values, shared read-only by every response.
var (
	textPlain   = []string{"text/plain; charset=utf-8"}
	octetStream = []string{"application/octet-stream"}
	noSniff     = []string{"nosniff"}
)

// patternBlock is Pattern repeated to 32 KiB; its length is a multiple of
// len(Pattern), so consecutive writes of whole blocks stay in phase.
var patternBlock = func() []byte {
	b := make([]byte, 0, 32<<10)
	for len(b)+len(Pattern) <= cap(b) {
		b = append(b, Pattern...)
	}
	return b
}()

// handler serves every endpoint of the test backend.
type handler struct {
	name  []string // X-Backend-Name value
	hello []byte   // "hello from <name>\n"
	pool  sync.Pool
}

func newHandler(name string) *handler {
	h := &handler{
		name:  []string{name},
		hello: []byte("hello from " + name + "\n"),
	}
	h.pool.New = func() any {
		b := make([]byte, 0, 512)
		return &b
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr["X-Backend-Name"] = h.name
	switch r.URL.Path {
	case "/delay":
		h.delay(w, r)
	case "/status":
		h.status(w, r)
	case "/bytes":
		h.bytes(w, r)
	case "/echo":
		h.echo(w, r)
	case "/sha256":
		h.sha(w, r)
	case "/close":
		h.close(w, r)
	case "/headers":
		h.headers(w, r)
	default:
		h.root(w, r)
	}
}

// root writes the three-line hello body. It allocates nothing: the buffer
// comes from a pool and the header values are shared slices; net/http adds
// Content-Length itself because the body is small.
func (h *handler) root(w http.ResponseWriter, r *http.Request) {
	bp := h.pool.Get().(*[]byte)
	b := appendHello((*bp)[:0], h.hello, r.Header)
	w.Header()["Content-Type"] = textPlain
	w.Write(b)
	*bp = b
	h.pool.Put(bp)
}

// appendHello appends the body of GET / to dst.
func appendHello(dst, hello []byte, hdr http.Header) []byte {
	dst = append(dst, hello...)
	dst = append(dst, "x-proxy: "...)
	dst = appendJoined(dst, hdr["X-Proxy"])
	dst = append(dst, "\nx-forwarded-for: "...)
	dst = appendJoined(dst, hdr["X-Forwarded-For"])
	return append(dst, '\n')
}

// appendJoined appends vs joined by ", ", or "-" when vs is empty.
func appendJoined(dst []byte, vs []string) []byte {
	if len(vs) == 0 {
		return append(dst, '-')
	}
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, v...)
	}
	return dst
}

// intParam parses query parameter key as a base-10 integer in [lo, hi].
// An absent parameter yields def.
func intParam(r *http.Request, key string, def, lo, hi int64) (int64, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, errBadParam
	}
	return n, nil
}

func badRequest(w http.ResponseWriter, key string) {
	http.Error(w, errBadParam.Error()+": "+key, http.StatusBadRequest)
}

func (h *handler) delay(w http.ResponseWriter, r *http.Request) {
	ms, err := intParam(r, "ms", 0, 0, maxDelayMS)
	if err != nil {
		badRequest(w, "ms")
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	h.root(w, r)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	code, err := intParam(r, "code", 200, 200, 599)
	if err != nil {
		badRequest(w, "code")
		return
	}
	// RFC 9110 sections 15.3.5 and 15.4.5: 204 and 304 have no content.
	if code == http.StatusNoContent || code == http.StatusNotModified {
		w.WriteHeader(int(code))
		return
	}
	w.Header()["Content-Type"] = textPlain
	w.WriteHeader(int(code))
	io.WriteString(w, "status "+strconv.Itoa(int(code))+"\n")
}

func (h *handler) bytes(w http.ResponseWriter, r *http.Request) {
	n, err := intParam(r, "n", 0, 0, maxBytes)
	if err != nil {
		badRequest(w, "n")
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = octetStream
	hdr["X-Content-Type-Options"] = noSniff
	if r.URL.Query().Get("chunked") == "1" {
		// An explicit Transfer-Encoding makes net/http chunk the body even
		// when it would fit in one buffer.
		hdr.Set("Transfer-Encoding", "chunked")
	} else {
		hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	writePattern(w, n)
}

// writePattern writes the first n bytes of the repeating Pattern to w.
func writePattern(w io.Writer, n int64) error {
	for n > 0 {
		chunk := patternBlock
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}

func (h *handler) echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody+1))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxEchoBody {
		http.Error(w, errTooLarge.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	sum := sha256.Sum256(body)
	hdr := w.Header()
	if ct := r.Header["Content-Type"]; len(ct) > 0 {
		hdr["Content-Type"] = ct[:1]
	} else {
		hdr["Content-Type"] = octetStream
	}
	hdr.Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
	hdr.Set("X-Body-Length", strconv.Itoa(len(body)))
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (h *handler) sha(w http.ResponseWriter, r *http.Request) {
	d := sha256.New()
	n, err := io.Copy(d, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	sum := hex.EncodeToString(d.Sum(nil))
	length := strconv.FormatInt(n, 10)
	hdr := w.Header()
	hdr["Content-Type"] = textPlain
	hdr.Set("X-Body-Sha256", sum)
	hdr.Set("X-Body-Length", length)
	io.WriteString(w, sum+" "+length+"\n")
}

func (h *handler) close(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if r.URL.Query().Get("rst") == "1" {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	conn.Close()
}

func (h *handler) headers(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = textPlain
	w.Write(appendHeaders(nil, r))
}

// appendHeaders appends the /headers dump of r to dst.
func appendHeaders(dst []byte, r *http.Request) []byte {
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.RequestURI...)
	dst = append(dst, ' ')
	dst = append(dst, r.Proto...)
	dst = append(dst, "\nHost: "...)
	dst = append(dst, r.Host...)
	dst = append(dst, '\n')
	names := make([]string, 0, len(r.Header)+1)
	for k := range r.Header {
		names = append(names, k)
	}
	if len(r.TransferEncoding) > 0 && r.Header["Transfer-Encoding"] == nil {
		names = append(names, "Transfer-Encoding")
	}
	sort.Strings(names)
	for _, k := range names {
		vs := r.Header[k]
		if k == "Transfer-Encoding" && vs == nil {
			vs = r.TransferEncoding
		}
		for _, v := range vs {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, '\n')
		}
	}
	return dst
}
