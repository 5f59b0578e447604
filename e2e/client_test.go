package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// response is what a raw client read back for one request.
type response struct {
	Status  int
	Header  http.Header
	Body    []byte
	BodyErr error // non-nil: the body was truncated or malformed
	Interim []int // 1xx statuses seen before the final response
	Close   bool  // the response carried Connection: close
}

func (r *response) String() string {
	if r == nil {
		return "no response"
	}
	s := fmt.Sprintf("%d %q", r.Status, r.Body)
	if r.BodyErr != nil {
		s += fmt.Sprintf(" (body error: %v)", r.BodyErr)
	}
	if len(r.Interim) > 0 {
		s += fmt.Sprintf(" after 1xx %v", r.Interim)
	}
	if r.Close {
		s += " Connection: close"
	}
	return s
}

// readResponse reads one final response (skipping 1xx other than 101) for a
// request with the given method.
func readResponse(br *bufio.Reader, method string) (*response, error) {
	out := &response{}
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			if len(out.Interim) > 0 {
				return out, err
			}
			return nil, err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != 101 {
			out.Interim = append(out.Interim, res.StatusCode)
			continue
		}
		out.Status, out.Header, out.Close = res.StatusCode, res.Header, res.Close
		out.Body, out.BodyErr = io.ReadAll(res.Body)
		bodyless := method == "HEAD" || res.StatusCode == 204 || res.StatusCode == 304
		if out.BodyErr == nil && !bodyless && res.ContentLength >= 0 && int64(len(out.Body)) != res.ContentLength {
			out.BodyErr = errTruncated
		}
		return out, nil
	}
}

// expectClosed reports nil when the peer closes the connection without
// sending anything more within d.
func expectClosed(c net.Conn, br *bufio.Reader, d time.Duration) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		return fmt.Errorf("%w: %s", errExtraBytes, quote(b, 200))
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if n > 0 {
		return fmt.Errorf("%w: %s", errExtraBytes, quote(buf[:n], 200))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errNotClosed
	}
	return nil // EOF or reset
}

// roundTrip writes req on c and reads one response.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte, method string, d time.Duration) (*response, error) {
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	return readResponse(br, method)
}
