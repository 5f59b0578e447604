//go:build stress

package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stressRow is one line of the summary table.
type stressRow struct {
	Case             string
	Tried, Passed    int64
	Requests, Errors int64
	RSSStart, RSSEnd int64 // kB
}

var (
	stressMu   sync.Mutex
	stressRows []stressRow
)

func addRow(r stressRow) {
	stressMu.Lock()
	stressRows = append(stressRows, r)
	stressMu.Unlock()
}

// TestStress runs the long cases one after another and prints the summary
// table; any failure fails the test.
func TestStress(t *testing.T) {
	requireProxy(t)
	t.Run("Slowloris", stressSlowloris)
	t.Run("MaxConnections", stressMaxConnections)
	t.Run("FDLimit", stressFDLimit)
	t.Run("SlowDownloads", stressSlowDownloads)
	t.Run("Soak", stressSoak)
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-16s %8s %8s %10s %8s %12s %12s\n", "case", "tried", "passed", "requests", "errors", "RSS start kB", "RSS end kB")
	for _, r := range stressRows {
		fmt.Fprintf(&b, "%-16s %8d %8d %10d %8d %12d %12d\n", r.Case, r.Tried, r.Passed, r.Requests, r.Errors, r.RSSStart, r.RSSEnd)
	}
	t.Log(b.String())
	fmt.Print(b.String())
}

// latencies runs sequential GETs on one keep-alive connection for d and
// returns the sorted latencies and the number of failures.
func latencies(addr string, d time.Duration) ([]time.Duration, int) {
	c := &loadClient{addr: addr}
	defer c.close()
	var out []time.Duration
	fails := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		m := newMarker()
		start := time.Now()
		r, _, _, err := c.get("/lat/" + m)
		if err != nil || r.Status != 200 || !bytes.Contains(r.Body, []byte(m)) {
			fails++
			continue
		}
		out = append(out, time.Since(start))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, fails
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return -1
	}
	return d[len(d)*99/100]
}

// stressSlowloris: 2,000 connections send their heads one byte per second;
// a normal client keeps its latency and the slow ones are closed after
// header_timeout (5s).
func stressSlowloris(t *testing.T) {
	be := startBackend(t)
	be.noRecord = true
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, HeaderTimeout: "5s", MaxConnections: 10000})
	rss0 := procStatus(px.Pid(), "VmRSS")
	before, f0 := latencies(px.Addr, 3*time.Second)
	const n = 2000
	head := []byte("GET /slow HTTP/1.1\r\nHost: e2e\r\nX-Pad: " + strings.Repeat("p", 64) + "\r\n\r\n")
	var opened, closedInTime, closedLate, stillOpen atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", px.Addr, 5*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			opened.Add(1)
			t0 := time.Now()
			done := make(chan struct{})
			go func() { // detect the close
				io.Copy(io.Discard, c)
				close(done)
			}()
			for j := 0; j < len(head); j++ {
				select {
				case <-done:
					if time.Since(t0) < 8*time.Second {
						closedInTime.Add(1)
					} else {
						closedLate.Add(1)
					}
					return
				case <-time.After(time.Second):
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write(head[j : j+1])
				if time.Since(t0) > 12*time.Second {
					stillOpen.Add(1)
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	during, f1 := latencies(px.Addr, 3*time.Second)
	wg.Wait()
	rss1 := procStatus(px.Pid(), "VmRSS")
	t.Logf("slowloris: %d slow conns opened, run took %v; normal client p99 before %v (%d reqs), during %v (%d reqs); slow conns closed within 8s: %d, later: %d, still open at 12s: %d; RSS %d -> %d kB",
		opened.Load(), time.Since(start).Round(time.Millisecond), p99(before), len(before), p99(during), len(during), closedInTime.Load(), closedLate.Load(), stillOpen.Load(), rss0, rss1)
	errs := int64(f0 + f1)
	if f0+f1 > 0 {
		t.Errorf("normal client: %d failed requests (before %d, during %d)", f0+f1, f0, f1)
	}
	if opened.Load() < n*99/100 {
		t.Errorf("only %d of %d slow connections could be opened", opened.Load(), n)
	}
	if p99(during) > 5*p99(before)+50*time.Millisecond {
		t.Errorf("normal client p99 during slowloris %v, want <= 5 x %v + 50ms", p99(during), p99(before))
	}
	if got := closedInTime.Load(); got < opened.Load() {
		t.Errorf("%d of %d slow connections closed within header_timeout+3s (5s+3s); %d later, %d never", got, opened.Load(), closedLate.Load(), stillOpen.Load())
	}
	if !px.Alive() {
		t.Fatalf("pace died; output:\n%s", px.out)
	}
	passed := int64(0)
	if !t.Failed() {
		passed = 1
	}
	addRow(stressRow{"slowloris", 1, passed, int64(len(before) + len(during)), errs, rss0, rss1})
	px.Stop(t)
}

// holdConns opens n idle connections and reports which ones pace closed
// within 2.5 s: with deferred_accept on, a connection that sends nothing
// stays with the kernel for about a second (until the client answers the
// retransmitted SYN-ACK), and only then does pace accept it, and close it
// if it is over a limit.
func holdConns(addr string, n int) (open []net.Conn, refused, closed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 3*time.Second)
			if err != nil {
				mu.Lock()
				refused++
				mu.Unlock()
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	time.Sleep(2500 * time.Millisecond)
	var still []net.Conn
	buf := make([]byte, 1)
	for _, c := range open {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(buf); err != nil && os.IsTimeout(err) {
			c.SetReadDeadline(time.Time{})
			still = append(still, c)
			continue
		}
		closed++
		c.Close()
	}
	return still, refused, closed
}

// serveSample sends one GET on up to k of the open connections.
func serveSample(open []net.Conn, k int) (ok, fail int, first string) {
	for i, c := range open {
		if i >= k {
			break
		}
		m := newMarker()
		r, err := roundTrip(c, bufio.NewReader(c), []byte("GET /held/"+m+" HTTP/1.1\r\nHost: e2e\r\n\r\n"), "GET", 5*time.Second)
		if err == nil && r.Status == 200 && bytes.Contains(r.Body, []byte(m)) {
			ok++
		} else {
			fail++
			if first == "" {
				first = fmt.Sprintf("%v %v", r, err)
			}
		}
	}
	return
}

func freshGet(t *testing.T, addr string) bool {
	t.Helper()
	for i := 0; i < 50; i++ {
		c := &loadClient{addr: addr}
		m := newMarker()
		r, _, _, err := c.get("/fresh/" + m)
		c.close()
		if err == nil && r.Status == 200 && bytes.Contains(r.Body, []byte(m)) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// stressMaxConnections: max_connections = 500, 1,500 opened: the excess is
// refused or closed at once, the rest are served, and pace recovers.
func stressMaxConnections(t *testing.T) {
	be := startBackend(t)
	be.noRecord = true
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, MaxConnections: 500})
	rss0 := procStatus(px.Pid(), "VmRSS")
	open, refused, closed := holdConns(px.Addr, 1500)
	ok, fail, first := serveSample(open, len(open))
	rss1 := procStatus(px.Pid(), "VmRSS")
	t.Logf("max_connections=500: of 1500, %d held open, %d closed by pace, %d refused; served %d of the open ones, %d failed; fds %d",
		len(open), closed, refused, ok, fail, openFDs(px.Pid()))
	if len(open) > 500 {
		t.Errorf("%d connections held open, want <= max_connections 500", len(open))
	}
	if len(open) < 450 {
		t.Errorf("only %d connections held open, want about 500", len(open))
	}
	if fail > 0 {
		t.Errorf("%d of the connections pace kept could not be served: %s", fail, first)
	}
	for _, c := range open {
		c.Close()
	}
	if !freshGet(t, px.Addr) {
		t.Errorf("pace does not serve a fresh client after the connection flood")
	}
	if !px.Alive() {
		t.Fatalf("pace died; output:\n%s", px.out)
	}
	addRow(stressRow{"max-connections", 1, b2i(!t.Failed()), int64(ok), int64(fail), rss0, rss1})
	px.Stop(t)
}

// stressFDLimit: pace under RLIMIT_NOFILE 256 gets 600 connections; it must
// not die (gnet stops its engine on EMFILE), must serve what it kept, and
// must serve fresh clients once the flood is gone.
func stressFDLimit(t *testing.T) {
	be := startBackend(t)
	be.noRecord = true
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, NoFile: 256})
	rss0 := procStatus(px.Pid(), "VmRSS")
	open, refused, closed := holdConns(px.Addr, 600)
	ok, fail, first := serveSample(open, 100)
	t.Logf("nofile=256: of 600, %d held open, %d closed, %d refused; sample served %d, failed %d; fds %d", len(open), closed, refused, ok, fail, openFDs(px.Pid()))
	if fail > 0 {
		t.Errorf("%d of the connections pace kept could not be served: %s", fail, first)
	}
	if !px.Alive() {
		t.Fatalf("pace died past its fd limit; output:\n%s", px.out)
	}
	for _, c := range open {
		c.Close()
	}
	if !freshGet(t, px.Addr) {
		t.Errorf("pace does not serve a fresh client after running out of fds (accept loop dead?)")
	}
	if !px.Alive() {
		t.Fatalf("pace died; output:\n%s", px.out)
	}
	rss1 := procStatus(px.Pid(), "VmRSS")
	addRow(stressRow{"fd-limit", 1, b2i(!t.Failed()), int64(ok), int64(fail), rss0, rss1})
	px.Stop(t)
}

// stressSlowDownloads: 100 clients download 50 MiB bodies at about
// 1 MiB/s for 5 s; pace must apply backpressure, not buffer (RSS bound).
func stressSlowDownloads(t *testing.T) {
	be := startBackend(t)
	be.noRecord = true
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}})
	rss0 := procStatus(px.Pid(), "VmRSS")
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if v := procStatus(px.Pid(), "VmRSS"); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	var okN, failN, bytesRead atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", px.Addr)
			if err != nil {
				failN.Add(1)
				return
			}
			defer c.Close()
			c.Write([]byte("GET /mode/big/50 HTTP/1.1\r\nHost: e2e\r\n\r\n"))
			buf := make([]byte, 64<<10)
			got := 0
			for s := 0; s < 5; s++ { // ~1 MiB per second
				end := time.Now().Add(time.Second)
				for n := 0; n < 1<<20; {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					k, err := c.Read(buf)
					n += k
					got += k
					if err != nil {
						failN.Add(1)
						return
					}
				}
				time.Sleep(time.Until(end))
			}
			bytesRead.Add(int64(got))
			okN.Add(1)
		}()
	}
	wg.Wait()
	close(stop)
	rss1 := procStatus(px.Pid(), "VmRSS")
	t.Logf("slow downloads: %d ok, %d failed, %d MiB read; pace RSS start %d kB, peak %d kB, end %d kB", okN.Load(), failN.Load(), bytesRead.Load()>>20, rss0, peak.Load(), rss1)
	if failN.Load() > 0 {
		t.Errorf("%d slow downloads failed", failN.Load())
	}
	if peak.Load() > 512<<10 {
		t.Errorf("pace RSS peaked at %d MiB with 100 slow readers of 50 MiB bodies, want <= 512 MiB (backpressure missing?)", peak.Load()>>10)
	}
	addRow(stressRow{"slow-downloads", 100, okN.Load(), 100, failN.Load(), rss0, peak.Load()})
	px.Stop(t)
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines(?:\{[^}]*\})? ([0-9.e+]+)`)

func goroutines(addr string) int {
	c := &loadClient{addr: addr}
	defer c.close()
	r, _, _, err := c.get("/metrics")
	if err != nil || r.Status != 200 {
		return -1
	}
	m := goroutinesRE.FindSubmatch(r.Body)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(string(m[1]), 64)
	return int(f)
}

// stressSoak: two million requests of mixed methods and sizes over 64
// keep-alive connections; every response checked; RSS, goroutines and fds
// flat at the end. PACE_E2E_SOAK_N overrides the request count.
func stressSoak(t *testing.T) {
	total := int64(2_000_000)
	if s := os.Getenv("PACE_E2E_SOAK_N"); s != "" {
		total, _ = strconv.ParseInt(s, 10, 64)
	}
	b1, b2 := startBackend(t), startBackend(t)
	b1.noRecord, b2.noRecord = true, true
	px := startProxy(t, proxyConfig{Backends: []string{b1.Addr, b2.Addr}, Workers: 2})
	type sample struct {
		done     int64
		rss      int64
		gor, fds int
	}
	var samples []sample
	take := func(done int64) {
		samples = append(samples, sample{done, procStatus(px.Pid(), "VmRSS"), goroutines(px.Addr), openFDs(px.Pid())})
	}
	take(0)
	sizes := []int{0, 10, 100, 1000, 4096, 16384, 65536}
	var next, errs atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			c := &loadClient{addr: px.Addr}
			defer c.close()
			payload := bytes.Repeat([]byte("x"), 65536)
			for next.Add(1) <= total {
				m := newMarker()
				var req []byte
				method := [...]string{"GET", "GET", "HEAD", "POST", "PUT", "DELETE"}[rng.Intn(6)]
				body := []byte{}
				if method == "POST" || method == "PUT" {
					body = payload[:sizes[rng.Intn(len(sizes))]]
				}
				req = fmt.Appendf(nil, "%s /soak/%s HTTP/1.1\r\nHost: e2e\r\nContent-Length: %d\r\n\r\n%s", method, m, len(body), body)
				if c.conn == nil {
					conn, err := net.Dial("tcp", px.Addr)
					if err != nil {
						errs.Add(1)
						continue
					}
					c.conn, c.rr = conn, &recReader{r: conn}
					c.br = bufio.NewReader(c.rr)
				}
				r, err := roundTrip(c.conn, c.br, req, method, 10*time.Second)
				c.rr.all = c.rr.all[:0]
				sum := sha256.Sum256(body)
				want := fmt.Sprintf("path=/soak/%s len=%d sha=%s", m, len(body), hex.EncodeToString(sum[:4]))
				good := err == nil && r.Status == 200 && r.BodyErr == nil
				if good && method != "HEAD" {
					good = bytes.Contains(r.Body, []byte(want))
				}
				if !good {
					errs.Add(1)
					mu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, fmt.Sprintf("%s /soak/%s (%d bytes): %v %v", method, m, len(body), r, err))
					}
					mu.Unlock()
					c.close()
				} else if r.Close {
					c.close()
				}
			}
		}(w)
	}
	// Sample ten times during the run.
	doneCh := make(chan struct{})
	go func() { wg.Wait(); close(doneCh) }()
	start := time.Now()
	for tick := time.NewTicker(2 * time.Second); ; {
		select {
		case <-doneCh:
			tick.Stop()
			goto finished
		case <-tick.C:
			if d := min(next.Load(), total); d > int64(len(samples))*total/10 {
				take(d)
			}
		}
	}
finished:
	el := time.Since(start)
	time.Sleep(2 * time.Second) // let pace close what the clients closed
	take(total)
	var b strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&b, "\n  at %8d: RSS %7d kB, goroutines %5d, fds %5d", s.done, s.rss, s.gor, s.fds)
	}
	t.Logf("soak: %d requests in %v (%.0f req/s), %d errors%s", total, el.Round(time.Second), float64(total)/el.Seconds(), errs.Load(), b.String())
	if errs.Load() > 0 {
		t.Errorf("%d of %d soak requests failed:\n  %s", errs.Load(), total, strings.Join(firstErrs, "\n  "))
	}
	// Flat: the end against the sample after warm-up (20%).
	ref := samples[min(2, len(samples)-1)]
	end := samples[len(samples)-1]
	if end.rss > ref.rss*3/2+20<<10 {
		t.Errorf("RSS grew from %d kB (at %d) to %d kB at the end", ref.rss, ref.done, end.rss)
	}
	// Idle backend pools legitimately keep connections (and their
	// goroutines) after the run, so the reference is the warm sample.
	// gnet's goroutine pool keeps idle workers for 10 s after a burst of
	// dials or unparks, so the count at the last request can sit above
	// it; a leak is what is still there once those have expired.
	settled := end.gor
	for deadline := time.Now().Add(15 * time.Second); settled > ref.gor+20 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		settled = goroutines(px.Addr)
	}
	if settled > ref.gor+20 {
		t.Errorf("goroutines %d at the end and %d 15 s later, %d after warm-up (%d before traffic): growth", end.gor, settled, ref.gor, samples[0].gor)
	} else if settled != end.gor {
		t.Logf("goroutines %d at the end, %d once gnet's idle pool workers expired (%d after warm-up)", end.gor, settled, ref.gor)
	}
	if end.fds > ref.fds+20 {
		t.Errorf("open fds %d at the end (clients closed), %d after warm-up (%d before traffic): growth", end.fds, ref.fds, samples[0].fds)
	}
	if got := int64(b1.Count() + b2.Count()); got < total*99/100 {
		t.Errorf("backends received %d requests for %d sent", got, total)
	}
	addRow(stressRow{"soak", total, total - errs.Load(), total, errs.Load(), samples[0].rss, end.rss})
	px.Stop(t)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
