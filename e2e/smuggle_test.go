package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var markerSeq atomic.Uint32

// newMarker returns a marker unique within this test process; markerRE
// finds it in anything the backend receives.
func newMarker() string { return fmt.Sprintf("mk%08x", markerSeq.Add(1)) }

// outcome is what one client observed for one corpus case.
type outcome struct {
	Client   int
	Marker   string // in every request of the case
	Probe    string // in the follow-up request
	Sent     []byte
	Resp     *response
	RespErr  error
	Extra    []*response // further responses to pipelined requests
	CloseErr error       // after Connection: close: nil when the connection closed cleanly
	Probed   bool
	ProbeRsp *response
	ProbeErr error
	Closed   bool // the connection ended cleanly (EOF/reset, no stray bytes)
}

func (o *outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %d marker %s\n    sent: %s\n    got:  ", o.Client, o.Marker, quote(o.Sent, 300))
	if o.Resp != nil {
		b.WriteString(o.Resp.String())
	} else {
		fmt.Fprintf(&b, "no response (%v)", o.RespErr)
	}
	for _, r := range o.Extra {
		fmt.Fprintf(&b, "\n    then: %v", r)
	}
	if o.CloseErr != nil {
		fmt.Fprintf(&b, "\n    after close: %v", o.CloseErr)
	}
	if o.Probed {
		if o.ProbeRsp != nil {
			fmt.Fprintf(&b, "\n    probe GET /probe/%s: %v", o.Probe, o.ProbeRsp)
		} else {
			fmt.Fprintf(&b, "\n    probe GET /probe/%s: no response (%v)", o.Probe, o.ProbeErr)
		}
	}
	return b.String()
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func firstToken(b []byte) string {
	if i := bytes.IndexAny(b, " \t\r\n"); i > 0 {
		return string(b[:i])
	}
	return "GET"
}

// runCase sends c once on a fresh connection and records what came back.
func runCase(addr string, c *corpusCase, client int) *outcome {
	o := &outcome{Client: client, Marker: newMarker(), Probe: newMarker()}
	o.Sent, _ = expand(c.Send, o.Marker)
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		o.RespErr = err
		return o
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	o.Resp, o.RespErr = roundTrip(conn, br, o.Sent, firstToken(o.Sent), 5*time.Second)
	if o.RespErr != nil {
		if !isTimeout(o.RespErr) {
			o.Closed = true
		}
		return o
	}
	last := o.Resp
	want := 1
	for _, e := range c.Expect {
		want = max(want, e.Responses)
	}
	for i := 1; i < want && !last.Close; i++ {
		r, err := readResponse(br, "GET")
		if err != nil {
			break
		}
		o.Extra = append(o.Extra, r)
		last = r
	}
	if last.Close {
		o.CloseErr = expectClosed(conn, br, 2*time.Second)
		o.Closed = o.CloseErr == nil
		return o
	}
	o.Probed = true
	req := "GET /probe/" + o.Probe + " HTTP/1.1\r\nHost: e2e\r\n\r\n"
	o.ProbeRsp, o.ProbeErr = roundTrip(conn, br, []byte(req), "GET", 5*time.Second)
	if o.ProbeErr != nil && !isTimeout(o.ProbeErr) {
		o.Closed = br.Buffered() == 0
	}
	return o
}

// judge returns nil when o satisfies e given what the backend received, or
// the reasons it does not.
func judge(e expectation, o *outcome, be *backend) []string {
	var bad []string
	status := 0
	if o.Resp != nil {
		status = o.Resp.Status
	} else if isTimeout(o.RespErr) {
		bad = append(bad, "no response within 5s and the connection stayed open")
	}
	ok := false
	for _, s := range e.Statuses {
		ok = ok || s == status
	}
	if !ok {
		bad = append(bad, fmt.Sprintf("status %d, want one of %v", status, e.Statuses))
	}
	if o.Resp != nil && o.Resp.BodyErr != nil {
		bad = append(bad, fmt.Sprintf("response body broken: %v", o.Resp.BodyErr))
	}
	// A request whose body pace aborted (it streamed the head, then found
	// the body malformed and closed the backend connection) is not a
	// request the backend could act on; only complete ones count.
	var msgs []*message
	for _, m := range be.WithMarker(o.Marker) {
		if m.BodyErr == nil {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) != e.Backend {
		var raws []string
		for _, m := range msgs {
			raws = append(raws, quote(m.Raw, 200))
		}
		bad = append(bad, fmt.Sprintf("backend received %d requests with the marker, want %d: %s", len(msgs), e.Backend, strings.Join(raws, " | ")))
	} else if e.Body != nil && len(msgs) > 0 {
		want := strings.ReplaceAll(*e.Body, "{M}", o.Marker)
		if string(msgs[0].Body) != want {
			bad = append(bad, fmt.Sprintf("backend parsed body %q, want %q", msgs[0].Body, want))
		}
	}
	for _, r := range o.Extra {
		if r.Status != 200 || r.BodyErr != nil {
			bad = append(bad, fmt.Sprintf("pipelined response %v, want 200", r))
		}
	}
	if len(o.Extra)+1 < e.Responses {
		bad = append(bad, fmt.Sprintf("%d responses, want %d", len(o.Extra)+1, e.Responses))
	}
	if o.CloseErr != nil {
		bad = append(bad, fmt.Sprintf("after Connection: close: %v", o.CloseErr))
	}
	switch e.connRule(status) {
	case "close":
		if o.Resp != nil && !o.Resp.Close && len(o.Extra) == 0 {
			bad = append(bad, "response lacks Connection: close")
		}
		if !o.Closed {
			bad = append(bad, "connection not closed")
		}
	case "keep":
		if !o.Probed || o.ProbeRsp == nil {
			bad = append(bad, "connection not kept alive for the probe")
		}
	}
	probeMsgs := len(be.WithMarker(o.Probe))
	switch {
	case o.Probed && o.ProbeRsp != nil:
		if o.ProbeRsp.Status != e.Probe {
			bad = append(bad, fmt.Sprintf("probe status %d, want %d (desync?)", o.ProbeRsp.Status, e.Probe))
		}
		if e.Probe == 200 && !bytes.Contains(o.ProbeRsp.Body, []byte("path=/probe/"+o.Probe)) {
			bad = append(bad, fmt.Sprintf("%v: probe got %q", errWrongMarker, o.ProbeRsp.Body))
		}
		want := 0
		if e.Probe == 200 {
			want = 1
		}
		if probeMsgs != want {
			bad = append(bad, fmt.Sprintf("backend received the probe %d times, want %d", probeMsgs, want))
		}
	case o.Probed:
		if isTimeout(o.ProbeErr) {
			bad = append(bad, "probe got no response within 5s (connection stalled)")
		} else if !o.Closed {
			bad = append(bad, fmt.Sprintf("probe: %v", o.ProbeErr))
		}
		if probeMsgs != 0 {
			bad = append(bad, fmt.Sprintf("probe reached the backend %d times but got no response", probeMsgs))
		}
	}
	return bad
}

// TestSmuggleCorpus replays every corpus case from several concurrent
// clients, in random order, each with its own marker, then checks what the
// clients got and everything the backend received.
func TestSmuggleCorpus(t *testing.T) {
	requireProxy(t)
	t.Parallel()
	cases := loadCorpus(t)
	be := startBackend(t)
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, HeaderTimeout: "4s"})
	lbe := startBackend(t)
	lpx := startProxy(t, proxyConfig{Backends: []string{lbe.Addr}, MaxRequests: 1, WindowSeconds: 3600})
	// Spend the limited instance's budget.
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", lpx.Addr)
		if err != nil {
			t.Fatal(err)
		}
		r, err := roundTrip(c, bufio.NewReader(c), []byte("GET /warm HTTP/1.1\r\nHost: e2e\r\n\r\n"), "GET", 5*time.Second)
		c.Close()
		if err != nil {
			t.Fatalf("warm-up of the rate-limited pace: %v", err)
		}
		if i == 1 && r.Status != 429 {
			t.Errorf("second request on a pace with max_requests = 1: status %d, want 429", r.Status)
		}
	}

	const clients = 4
	type job struct {
		c      *corpusCase
		client int
	}
	var jobs []job
	for _, c := range cases {
		for i := 0; i < clients; i++ {
			jobs = append(jobs, job{c, i})
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	var mu sync.Mutex
	results := map[*corpusCase][]*outcome{}
	ch := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				addr := px.Addr
				if j.c.Instance == "limited" {
					addr = lpx.Addr
				}
				o := runCase(addr, j.c, j.client)
				mu.Lock()
				results[j.c] = append(results[j.c], o)
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // let stragglers reach the backends

	owner := map[string]*corpusCase{}
	for c, os := range results {
		for _, o := range os {
			owner[o.Marker], owner[o.Probe] = c, c
		}
	}
	// Every backend message: one client's marker only, and clean framing.
	msgProblems := map[*corpusCase][]string{}
	var orphan []string
	for _, b := range []*backend{be, lbe} {
		for _, m := range b.Messages() {
			marks := uniq(markerRE.FindAllString(string(m.Raw), -1))
			var bad []string
			if len(marks) > 1 {
				bad = append(bad, fmt.Sprintf("one backend message carries several clients' markers %v", marks))
			}
			if bytes.Contains(m.Raw, []byte("/warm ")) && len(marks) == 0 {
				continue
			}
			bad = append(bad, checkMessage(m)...)
			if len(bad) == 0 {
				continue
			}
			s := fmt.Sprintf("backend conn %d request %d: %s\n    raw: %s", m.Conn, m.N, strings.Join(bad, "; "), quote(m.Raw, 400))
			if len(marks) == 0 || owner[marks[0]] == nil {
				orphan = append(orphan, s)
				continue
			}
			msgProblems[owner[marks[0]]] = append(msgProblems[owner[marks[0]]], s)
		}
	}
	for _, s := range orphan {
		t.Errorf("backend message without a known marker: %s", s)
	}
	failed := 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			nfail := 0
			for _, o := range results[c] {
				var why []string
				matched := false
				for _, e := range c.Expect {
					bad := judge(e, o, map[string]*backend{"default": be, "limited": lbe}[c.Instance])
					if len(bad) == 0 {
						matched = true
						break
					}
					why = append(why, fmt.Sprintf("want %v: %s", e, strings.Join(bad, "; ")))
				}
				if !matched {
					// One detailed report per case; the rest are counted.
					if nfail == 0 {
						t.Errorf("%s:%d %s (%s)\n  %v\n  %s", c.File, c.Line, c.Name, c.Why, o, strings.Join(why, "\n  "))
					}
					nfail++
				}
			}
			if nfail > 1 {
				t.Errorf("%s: %d of %d clients failed", c.Name, nfail, len(results[c]))
			}
			if p := msgProblems[c]; len(p) > 0 {
				t.Errorf("%s:%d %s: %s (%d such backend messages)", c.File, c.Line, c.Name, p[0], len(p))
			}
			if t.Failed() {
				failed++
			}
		})
	}
	t.Logf("corpus: %d cases x %d clients, %d cases failed", len(cases), clients, failed)
	if !px.Alive() || !lpx.Alive() {
		t.Fatalf("pace died during the corpus run; output:\n%s\n%s", px.out, lpx.out)
	}
	px.Stop(t)
	lpx.Stop(t)
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
