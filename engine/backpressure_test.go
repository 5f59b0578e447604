package engine

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the real pace binary, so that its resident memory can
// be measured apart from the test's own backends and clients.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func paceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pace-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pace")
		out, err := exec.Command("go", "build", "-o", binPath, "..").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// runPace starts the binary with cfg (TOML) and waits for it to listen.
func runPace(t *testing.T, listen, cfg string) *exec.Cmd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(paceBinary(t), "-config", path, "-log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("pace did not start listening")
	return nil
}

// rssBytes reads a process's resident set size.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// peakRSS samples pid's RSS until stop is closed and returns the maximum.
func peakRSS(pid int, stop <-chan struct{}) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssBytes(pid); r > peak {
				peak = r
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// throttled reads or writes at most rate bytes per second.
type throttle struct {
	rate  int64
	start time.Time
	done  int64
}

func (th *throttle) wait(n int) {
	th.done += int64(n)
	due := th.start.Add(time.Duration(float64(th.done) / float64(th.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

const (
	bpSize  = 200 << 20 // bytes moved each way
	bpRate  = 2 << 20   // bytes per second on the slow side
	bpBound = 32 << 20  // allowed RSS growth
)

// bpPayload is the 64 KiB chunk both tests repeat to bpSize bytes, and
// the hash of the whole.
func bpPayload() ([]byte, hash.Hash) {
	chunk := pattern(64 << 10)
	h := sha256.New()
	for n := 0; n < bpSize; n += len(chunk) {
		h.Write(chunk)
	}
	return chunk, h
}

func bpConfig(listen string, backends ...string) string {
	q := make([]string, len(backends))
	for i, b := range backends {
		q[i] = strconv.Quote("http://" + b)
	}
	return fmt.Sprintf("[server]\nlisten = %q\nworkers = 2\n[upstreams]\nbackends = [%s]\nresponse_timeout = \"60s\"\n[rate_limit]\nenabled = false\n",
		listen, strings.Join(q, ", "))
}

func TestBackpressureSlowClient(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB at 2 MiB/s")
	}
	t.Parallel()
	chunk, want := bpPayload()
	be := newNamedBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bpSize))
		for n := 0; n < bpSize; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	listen := freeAddr(t)
	cmd := runPace(t, listen, bpConfig(listen, be.addr()))
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(256 << 10)
	base := rssBytes(cmd.Process.Pid)
	stop := make(chan struct{})
	peak := peakRSS(cmd.Process.Pid, stop)
	fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(conn, 32<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	th := &throttle{rate: bpRate, start: time.Now()}
	buf := make([]byte, 32<<10)
	var got int64
	for {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := resp.Body.Read(buf)
		h.Write(buf[:n])
		got += int64(n)
		th.wait(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	close(stop)
	p := <-peak
	if got != bpSize || string(h.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatalf("got %d bytes, hash match %v", got, string(h.Sum(nil)) == string(want.Sum(nil)))
	}
	t.Logf("slow client: pace RSS %d MiB at start, peak %d MiB (growth %d MiB, bound %d MiB)", base>>20, p>>20, (p-base)>>20, bpBound>>20)
	if p-base > bpBound {
		t.Fatalf("pace RSS grew by %d MiB reading %d MiB to a slow client, bound %d MiB", (p-base)>>20, bpSize>>20, bpBound>>20)
	}
}

func TestBackpressureSlowBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB at 2 MiB/s")
	}
	t.Parallel()
	chunk, want := bpPayload()
	be := newNamedBackend(t, "slow-reader", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		th := &throttle{rate: bpRate, start: time.Now()}
		buf := make([]byte, 32<<10)
		var n int64
		for {
			k, err := r.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			th.wait(k)
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	listen := freeAddr(t)
	cmd := runPace(t, listen, bpConfig(listen, be.addr()))
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	base := rssBytes(cmd.Process.Pid)
	stop := make(chan struct{})
	peak := peakRSS(cmd.Process.Pid, stop)
	fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", bpSize)
	for n := 0; n < bpSize; n += len(chunk) {
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(chunk); err != nil {
			t.Fatalf("upload after %d bytes: %v", n, err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	close(stop)
	p := <-peak
	if wantBody := fmt.Sprintf("%d %x", bpSize, want.Sum(nil)); string(body) != wantBody {
		t.Fatalf("backend saw %q, want %q", body, wantBody)
	}
	t.Logf("slow backend: pace RSS %d MiB at start, peak %d MiB (growth %d MiB, bound %d MiB)", base>>20, p>>20, (p-base)>>20, bpBound>>20)
	if p-base > bpBound {
		t.Fatalf("pace RSS grew by %d MiB uploading %d MiB to a slow backend, bound %d MiB", (p-base)>>20, bpSize>>20, bpBound>>20)
	}
}
