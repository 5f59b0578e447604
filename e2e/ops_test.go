package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP, which nginx users send to reload, must not kill pace (its
// default action would, dropping every request in flight): pace logs
// that it cannot reload yet and keeps serving.
func TestSIGHUPKeepsServing(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own signal handling")
	}
	t.Parallel()
	be := startBackend(t)
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}})
	if err := px.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if !px.Alive() {
		t.Fatalf("pace exited on SIGHUP: %v; output:\n%s", px.err, px.out)
	}
	c, err := net.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := roundTrip(c, bufio.NewReader(c), []byte("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"), "GET", 5*time.Second)
	if err != nil || resp.Status != 200 {
		t.Fatalf("after SIGHUP: %v, %v", resp, err)
	}
	if out := px.out.String(); !strings.Contains(out, "SIGHUP ignored") {
		t.Errorf("no log line for SIGHUP; output:\n%s", out)
	}
	px.Stop(t)
}

// Stop signals as operators send them: SIGQUIT (nginx -s quit) drains like
// SIGTERM; SIGTERM sent twice in a moment (GNU timeout signals pace, then
// its process group) is one stop request, not "exit now"; SIGUSR1 (nginx's
// reopen-logs, HAProxy's soft stop) is logged and changes nothing. In
// each case a request in flight completes and pace exits 0.
func TestStopSignals(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own signal handling")
	}
	t.Parallel()
	for _, tc := range []struct {
		name string
		send []syscall.Signal
	}{
		{"SIGQUIT", []syscall.Signal{syscall.SIGQUIT}},
		{"SIGTERM twice, 50 ms apart", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}},
		{"SIGUSR1 then SIGTERM", []syscall.Signal{syscall.SIGUSR1, syscall.SIGTERM}},
	} {
		be := startBackend(t)
		be.delay = 800 * time.Millisecond
		px := startProxy(t, proxyConfig{Backends: []string{be.Addr}, ShutdownTimeout: "5s"})
		c, err := net.Dial("tcp", px.Addr)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			resp, err := roundTrip(c, bufio.NewReader(c), []byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"), "GET", 5*time.Second)
			if err == nil && resp.Status != 200 {
				err = fmt.Errorf("status %d", resp.Status)
			}
			got <- err
		}()
		time.Sleep(300 * time.Millisecond) // the request is at the backend
		for i, sg := range tc.send {
			if i > 0 {
				// Apart enough for the kernel not to merge them into
				// one pending signal, as it does when they come at once.
				time.Sleep(50 * time.Millisecond)
			}
			if err := px.cmd.Process.Signal(sg); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-got; err != nil {
			t.Errorf("%s: the request in flight: %v; output:\n%s", tc.name, err, px.out)
		}
		select {
		case <-px.done:
		case <-time.After(6 * time.Second):
			t.Fatalf("%s: pace still running 6s later; output:\n%s", tc.name, px.out)
		}
		if px.err != nil {
			t.Errorf("%s: pace exited with %v, want status 0; output:\n%s", tc.name, px.err, px.out)
		}
		if tc.send[0] == syscall.SIGUSR1 && !strings.Contains(px.out.String(), "signal ignored") {
			t.Errorf("%s: no log line for SIGUSR1; output:\n%s", tc.name, px.out)
		}
		c.Close()
	}
}

// A second pace on a port that one already serves exits with an error
// instead of silently sharing the port through SO_REUSEPORT.
func TestSecondInstanceRefused(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own start-up check")
	}
	t.Parallel()
	be := startBackend(t)
	px := startProxy(t, proxyConfig{Backends: []string{be.Addr}})
	code, out := runToExit(t, 10*time.Second, proxyBin, "-config", filepath.Join(px.dir, "pace.toml"))
	if code != 1 {
		t.Fatalf("second pace exited with status %d, want 1; output:\n%s", code, out)
	}
	if !strings.Contains(out, "address already in use") {
		t.Errorf("second pace's output does not name the cause:\n%s", out)
	}
	if !px.Alive() {
		t.Fatal("the first pace died")
	}
	px.Stop(t)
}

// An open-file limit too low for even one client and its backend
// connection stops pace at start-up with a message that says what to
// raise, instead of a pace that listens and makes every request wait.
func TestOpenFileLimitTooLow(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own start-up check")
	}
	t.Parallel()
	conf := writeConfig(t, "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:9")
	code, out := runToExit(t, 10*time.Second, "prlimit", "--nofile=64", "--", proxyBin, "-config", conf)
	if code != 1 {
		t.Fatalf("pace under nofile 64 exited with status %d, want 1; output:\n%s", code, out)
	}
	if !strings.Contains(out, "open-file limit 64 is too low") || !strings.Contains(out, "ulimit -n") {
		t.Errorf("pace's output does not name the cause and the fix:\n%s", out)
	}
}

// writeConfig writes a config for pace on listen with backends to a new
// file in t's temporary directory, and returns its path.
func writeConfig(t *testing.T, listen string, backends ...string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "pace-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := proxyConfig{Backends: backends}
	if _, err := f.WriteString(cfg.toml(listen)); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// runToExit runs a command that is expected to exit by itself within
// limit, and returns its exit status and its output. It kills the
// command and fails the test if it is still running.
func runToExit(t *testing.T, limit time.Duration, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return 0, out.String()
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s still running after %v; output:\n%s", name, strings.Join(args, " "), limit, out.String())
		return 0, ""
	}
}

// A config file named without -config is refused: "pace -check x.toml"
// used to check ./proxy.toml and report it valid.
func TestStrayArgumentRefused(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own command line")
	}
	t.Parallel()
	code, out := runToExit(t, 10*time.Second, proxyBin, "-check", "other.toml")
	if code != 2 || !strings.Contains(out, `unexpected argument "other.toml"`) || strings.Contains(out, "valid") {
		t.Fatalf("pace -check other.toml: status %d, output:\n%s\nwant status 2 and the argument named", code, out)
	}
}

// A backend that is pace's own listen address is refused at start-up and
// by -check: every request would come back to pace, hop after hop, until
// the descriptors ran out. A backend whose name does not resolve is a
// warning only, since pace resolves names at each dial.
func TestSelfBackendRefused(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own configuration check")
	}
	t.Parallel()
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	self := writeConfig(t, listen, "127.0.0.1:9", "localhost:"+strings.Split(listen, ":")[1])
	for _, args := range [][]string{{"-check", "-config", self}, {"-config", self}} {
		code, out := runToExit(t, 10*time.Second, proxyBin, args...)
		if code != 1 || !strings.Contains(out, "own listen address") {
			t.Errorf("pace %s: status %d, output:\n%s\nwant status 1 and the loop named", strings.Join(args, " "), code, out)
		}
	}
	unknown := writeConfig(t, listen, "127.0.0.1:9", "pace-test.invalid:8000")
	code, out := runToExit(t, 10*time.Second, proxyBin, "-check", "-config", unknown)
	if code != 0 || !strings.Contains(out, "warning: backend http://pace-test.invalid:8000") {
		t.Errorf("pace -check with an unresolvable backend: status %d, output:\n%s\nwant status 0 and a warning", code, out)
	}
}

// -check binds the listen address as a start would: an address this host
// does not have fails it (status 1, naming server.listen), and a port in
// use, as by the pace the config is for, is only a warning.
func TestCheckBindsListen(t *testing.T) {
	requireProxy(t)
	if standin != "" {
		t.Skip("pace's own configuration check")
	}
	t.Parallel()
	// 192.0.2.0/24 is TEST-NET-1: no host has it.
	code, out := runToExit(t, 10*time.Second, proxyBin, "-check", "-config", writeConfig(t, "192.0.2.1:8080", "127.0.0.1:9"))
	if code != 1 || !strings.Contains(out, "server.listen") || !strings.Contains(out, "cannot assign requested address") {
		t.Errorf("pace -check, listen on an address this host lacks: status %d, output:\n%s\nwant status 1 naming server.listen", code, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, out = runToExit(t, 10*time.Second, proxyBin, "-check", "-config", writeConfig(t, l.Addr().String(), "127.0.0.1:9"))
	if code != 0 || !strings.Contains(out, "warning: "+l.Addr().String()+" is in use now") {
		t.Errorf("pace -check, listen on a port in use: status %d, output:\n%s\nwant status 0 and a warning", code, out)
	}
}
