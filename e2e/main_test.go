package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Sentinel errors of the suite.
var (
	errNotClosed    = errors.New("connection still open")
	errExtraBytes   = errors.New("extra bytes after the response")
	errNoListen     = errors.New("proxy did not start listening")
	errProxyExited  = errors.New("proxy exited early")
	errStopTimeout  = errors.New("proxy did not exit within the shutdown timeout")
	errBadCorpus    = errors.New("bad corpus case")
	errTruncated    = errors.New("truncated response")
	errWrongMarker  = errors.New("response belongs to another request")
	errBackendParse = errors.New("backend could not parse what pace sent")
)

var (
	// proxyBin is the binary under test; empty when skipReason is set.
	proxyBin string
	// standin is "nginx" when the harness drives nginx instead of pace.
	standin string
	// skipReason, when set, makes every test skip with it.
	skipReason string
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "pace-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	setup(tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// setup locates or builds the binary under test.
func setup(tmp string) {
	if s := os.Getenv("PACE_E2E_STANDIN"); s != "" {
		if s != "nginx" {
			skipReason = "PACE_E2E_STANDIN=" + s + ": only nginx is supported"
			return
		}
		p, err := exec.LookPath("nginx")
		if err != nil {
			skipReason = "PACE_E2E_STANDIN=nginx but nginx is not installed"
			return
		}
		standin, proxyBin = s, p
		return
	}
	if p := os.Getenv("PACE_E2E_BIN"); p != "" {
		proxyBin = p
		return
	}
	root, err := repoRoot()
	if err != nil {
		skipReason = "cannot locate the repository root: " + err.Error()
		return
	}
	bin := filepath.Join(tmp, "pace")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		skipReason = fmt.Sprintf("pace binary does not build yet (go build -o pace . in %s: %v):\n%s", root, err, msg)
		return
	}
	proxyBin = bin
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			return d, nil
		}
	}
	d, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(d, "go.mod")); err != nil {
		return "", err
	}
	return d, nil
}

// requireProxy skips t when there is no binary to test.
func requireProxy(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// quote renders raw protocol bytes readably for failure messages, cut to n
// bytes.
func quote(b []byte, n int) string {
	cut := ""
	if len(b) > n {
		b, cut = b[:n], fmt.Sprintf("...(%d bytes)", len(b))
	}
	return fmt.Sprintf("%q%s", b, cut)
}

var _ = bytes.MinRead
