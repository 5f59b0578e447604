package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proxyConfig is the part of pace's configuration the tests vary. Zero
// values leave pace's defaults in place except where noted.
type proxyConfig struct {
	Backends        []string // host:port of each backend
	Workers         int      // zero: 2
	MaxConnections  int      // zero: pace default
	HeaderTimeout   string   // zero: pace default
	IdleTimeout     string   // zero: pace default
	ShutdownTimeout string   // zero: "10s"
	ResponseTimeout string   // zero: pace default
	MaxRetries      int      // zero: pace default; negative: 0
	// MaxRequests is the rate limit per window; zero: effectively unlimited.
	MaxRequests   int
	WindowSeconds int // zero: 60
	// NoFile, when non-zero, runs pace under prlimit --nofile=NoFile.
	NoFile int
}

// proxy is one running pace (or stand-in) process.
type proxy struct {
	Addr string
	cfg  proxyConfig
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error // valid after done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePort returns a 127.0.0.1 port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (c proxyConfig) toml(listen string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nlisten = %q\n", listen)
	w := c.Workers
	if w == 0 {
		w = 2
	}
	fmt.Fprintf(&b, "workers = %d\n", w)
	if c.MaxConnections > 0 {
		fmt.Fprintf(&b, "max_connections = %d\n", c.MaxConnections)
	}
	if c.HeaderTimeout != "" {
		fmt.Fprintf(&b, "header_timeout = %q\n", c.HeaderTimeout)
	}
	if c.IdleTimeout != "" {
		fmt.Fprintf(&b, "idle_timeout = %q\n", c.IdleTimeout)
	}
	fmt.Fprintf(&b, "shutdown_timeout = %q\n", c.shutdownTimeout())
	b.WriteString("\n[upstreams]\nbackends = [")
	for i, be := range c.Backends {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", "http://"+be)
	}
	b.WriteString("]\n")
	if c.MaxRetries != 0 {
		fmt.Fprintf(&b, "max_retries = %d\n", max(c.MaxRetries, 0))
	}
	if c.ResponseTimeout != "" {
		fmt.Fprintf(&b, "response_timeout = %q\n", c.ResponseTimeout)
	}
	mr, ws := c.MaxRequests, c.WindowSeconds
	if mr == 0 {
		mr = 1 << 30
	}
	if ws == 0 {
		ws = 60
	}
	fmt.Fprintf(&b, "\n[rate_limit]\nmax_requests = %d\nwindow_seconds = %d\nkey_extractor = \"client_ip\"\n", mr, ws)
	b.WriteString("\n[metrics]\nenabled = true\nendpoint = \"/metrics\"\n")
	return b.String()
}

func (c proxyConfig) shutdownTimeout() string {
	if c.ShutdownTimeout == "" {
		return "10s"
	}
	return c.ShutdownTimeout
}

// nginxConf approximates cfg for the nginx stand-in.
func (c proxyConfig) nginxConf(dir, listen string) string {
	var ups strings.Builder
	for _, be := range c.Backends {
		fmt.Fprintf(&ups, "    server %s max_fails=3 fail_timeout=5s;\n", be)
	}
	ht := strings.TrimSuffix(c.HeaderTimeout, "s")
	if ht == "" {
		ht = "10"
	}
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream b {
%[3]s    keepalive 16;
  }
  server {
    listen %[2]s;
    client_header_timeout %[4]ss;
    large_client_header_buffers 4 16k;
    location = /metrics { return 200 "go_goroutines 1\n"; }
    location / {
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Proxy pace;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto http;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_next_upstream error timeout invalid_header;
      add_header X-Backend $upstream_addr always;
    }
  }
}
`, dir, listen, ups.String(), ht)
}

// startProxy starts the binary under test with cfg and waits until it
// listens. The process is stopped at cleanup if the test did not stop it.
func startProxy(t testing.TB, cfg proxyConfig) *proxy {
	t.Helper()
	requireProxy(t)
	dir := t.TempDir()
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	var args []string
	if standin == "nginx" {
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(cfg.nginxConf(dir, listen)), 0o644); err != nil {
			t.Fatal(err)
		}
		args = []string{proxyBin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}
	} else {
		conf := filepath.Join(dir, "pace.toml")
		if err := os.WriteFile(conf, []byte(cfg.toml(listen)), 0o644); err != nil {
			t.Fatal(err)
		}
		args = []string{proxyBin, "-config", conf, "-log-level", "warn"}
	}
	if cfg.NoFile > 0 {
		args = append([]string{"prlimit", fmt.Sprintf("--nofile=%d", cfg.NoFile), "--"}, args...)
	}
	p := &proxy{Addr: listen, cfg: cfg, dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("proxy output (exit: %v):\n%s", p.err, tail(p.out.String(), 4096))
			}
		}()
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%v: %v; config:\n%s\noutput:\n%s", errProxyExited, p.err, cfg.toml(listen), p.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v on %s within 15s; output:\n%s", errNoListen, listen, p.out)
		}
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Pid is the process id of the proxy.
func (p *proxy) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (p *proxy) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and requires a clean exit (status 0) within the
// configured shutdown timeout plus a second of slack.
func (p *proxy) Stop(t testing.TB) time.Duration {
	t.Helper()
	d, err := p.stop()
	if err != nil {
		t.Error(err)
	}
	return d
}

// stop is Stop for use off the test goroutine.
func (p *proxy) stop() (time.Duration, error) {
	start := time.Now()
	if !p.Alive() {
		return 0, fmt.Errorf("%w before SIGTERM: %v; output:\n%s", errProxyExited, p.err, p.out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	limit, err := time.ParseDuration(p.cfg.shutdownTimeout())
	if err != nil {
		return 0, err
	}
	select {
	case <-p.done:
	case <-time.After(limit + time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("%w (%v); output:\n%s", errStopTimeout, limit, p.out)
	}
	if p.err != nil {
		return time.Since(start), fmt.Errorf("proxy exit after SIGTERM = %v, want status 0; output:\n%s", p.err, p.out)
	}
	return time.Since(start), nil
}

// procStatus reads a field such as "VmRSS" (in kB) from /proc/PID/status.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// openFDs counts /proc/PID/fd entries.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}
