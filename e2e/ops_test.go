package e2e

import (
	"bufio"
	"net"
	"os/exec"
	"path/filepath"
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
	cmd := exec.Command(proxyBin, "-config", filepath.Join(px.dir, "pace.toml"))
	done := make(chan error, 1)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("second pace exited with %v, want status 1; output:\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "address already in use") {
			t.Errorf("second pace's output does not name the cause:\n%s", out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("a second pace started on %s; output:\n%s", px.Addr, out.String())
	}
	if !px.Alive() {
		t.Fatal("the first pace died")
	}
	px.Stop(t)
}
