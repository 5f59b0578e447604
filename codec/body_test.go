package codec

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// runBody feeds src to a fresh Body in pieces cut at the given points and
// returns the output, the total consumed and the final state.
func runBody(f Framing, mode BodyMode, src []byte, cuts ...int) (out []byte, consumed int, done bool, err error) {
	var b Body
	b.Reset(f, mode)
	prev := 0
	for _, c := range append(cuts, len(src)) {
		for prev < c {
			var n int
			out, n, done, err = b.Step(out, src[prev:c])
			consumed += n
			if err != nil || done {
				return
			}
			prev += n
			if n == 0 {
				break
			}
		}
		prev = c
	}
	return
}

func TestBodyLengthEverySplit(t *testing.T) {
	body := "hello, world"
	src := []byte(body + "GET / HTTP/1.1\r\n") // the next message follows
	for _, mode := range []BodyMode{ModeForward, ModeDechunk, ModeRechunk} {
		for cut := 0; cut <= len(src); cut++ {
			out, n, done, err := runBody(cl(int64(len(body))), mode, src, cut)
			if err != nil || !done || n != len(body) {
				t.Fatalf("mode %d cut %d: Step = %d, %v, %v, want %d, true, nil", mode, cut, n, done, err, len(body))
			}
			var payload []byte
			switch mode {
			case ModeForward:
				payload = src[:n]
				if len(out) != 0 {
					t.Fatalf("cut %d: ModeForward wrote %q", cut, out)
				}
			case ModeDechunk:
				payload = out
			case ModeRechunk:
				if cut == 0 || cut >= len(body) {
					if want := "c\r\n" + body + "\r\n0\r\n\r\n"; string(out) != want {
						t.Fatalf("cut %d: rechunked %q, want %q", cut, out, want)
					}
				}
				var ok bool
				payload, _, ok, err = runBody(chunked, ModeDechunk, out)
				if err != nil || !ok {
					t.Fatalf("cut %d: rechunked %q does not decode: %v", cut, out, err)
				}
			}
			if string(payload) != body {
				t.Fatalf("mode %d cut %d: payload %q, want %q", mode, cut, payload, body)
			}
		}
	}
}

func TestBodyLengthRemaining(t *testing.T) {
	var b Body
	b.Reset(cl(10), ModeForward)
	if b.Done() || b.Remaining() != 10 {
		t.Fatalf("after Reset: Done() = %v, Remaining() = %d, want false, 10", b.Done(), b.Remaining())
	}
	_, n, done, _ := b.Step(nil, []byte("1234"))
	if n != 4 || done || b.Remaining() != 6 {
		t.Fatalf("Step(4 bytes) = %d, %v, Remaining() = %d, want 4, false, 6", n, done, b.Remaining())
	}
	if _, err := b.Finish(nil); err != ErrTruncated {
		t.Fatalf("Finish() = %v, want ErrTruncated", err)
	}
	b.Reset(chunked, ModeForward)
	if b.Remaining() != -1 {
		t.Fatalf("chunked Remaining() = %d, want -1", b.Remaining())
	}
	b.Reset(cl(0), ModeForward)
	if !b.Done() {
		t.Fatalf("Content-Length 0 body is not Done")
	}
	var zero Body
	if !zero.Done() {
		t.Fatalf("zero Body is not Done")
	}
	zero.Reset(Framing{}, ModeRechunk)
	if out, n, done, err := zero.Step(nil, []byte("x")); len(out) != 0 || n != 0 || !done || err != nil {
		t.Fatalf("BodyNone Step = %q, %d, %v, %v, want empty, 0, true, nil", out, n, done, err)
	}
}

func TestBodyClose(t *testing.T) {
	var b Body
	b.Reset(Framing{Kind: BodyClose}, ModeRechunk)
	out, n, done, err := b.Step(nil, []byte("abc"))
	if n != 3 || done || err != nil {
		t.Fatalf("Step = %d, %v, %v", n, done, err)
	}
	out, err = b.Finish(out)
	if want := "3\r\nabc\r\n0\r\n\r\n"; string(out) != want || err != nil || !b.Done() {
		t.Fatalf("rechunked close body = %q, %v, want %q", out, err, want)
	}
}

const chunkedSrc = "5;name=\"va;l\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n" +
	"000\r\n" + // not last: size 0 ends the body, so this is the last chunk
	"Trailer-A: x\r\nTrailer-B:\ty z \r\n\r\n"

func TestBodyChunkedEverySplit(t *testing.T) {
	src := []byte(chunkedSrc + "NEXT")
	payload := "hello" + "abcdefghijklmnopqrstuvwxyz"
	wants := map[BodyMode]string{
		ModeForward: "",
		ModeDechunk: payload,
		ModeRechunk: "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
	}
	for mode, want := range wants {
		for i := 0; i <= len(src); i++ {
			for _, cuts := range [][]int{{i}, {i / 2, i}} {
				out, n, done, err := runBody(chunked, mode, src, cuts...)
				if string(out) != want || n != len(chunkedSrc) || !done || err != nil {
					t.Fatalf("mode %d cuts %v: Step = %q, %d, %v, %v, want %q, %d, true, nil", mode, cuts, out, n, done, err, want, len(chunkedSrc))
				}
			}
		}
	}
	// Byte at a time.
	var b Body
	b.Reset(chunked, ModeDechunk)
	var out []byte
	for i := 0; i < len(chunkedSrc); i++ {
		var n int
		var err error
		out, n, _, err = b.Step(out, src[i:i+1])
		if n != 1 || err != nil {
			t.Fatalf("byte %d: Step = %d, %v", i, n, err)
		}
	}
	if !b.Done() || string(out) != payload {
		t.Fatalf("byte at a time: %q, Done() = %v", out, b.Done())
	}
}

func TestBodyChunkedBad(t *testing.T) {
	tests := []struct {
		in  string
		err error
	}{
		{"\r\n", ErrBadChunk},                                    // empty size
		{"x\r\n", ErrBadChunk},                                   // non-hex
		{"0x5\r\nhello\r\n0\r\n\r\n", ErrBadChunk},               // 0x prefix
		{"+5\r\nhello\r\n0\r\n\r\n", ErrBadChunk},                // sign
		{"-5\r\n", ErrBadChunk},                                  // sign
		{" 5\r\n", ErrBadChunk},                                  // leading space
		{"5 \r\nhello\r\n", ErrBadChunk},                         // trailing space without extension
		{"5x\r\nhello\r\n", ErrBadChunk},                         // trailing junk
		{"5\nhello\r\n", ErrBadChunk},                            // bare LF after size
		{"5\rhello\r\n", ErrBadChunk},                            // bare CR after size
		{"5;a\nb\r\nhello\r\n", ErrBadChunk},                     // bare LF in extension
		{"5;a\x00\r\nhello\r\n", ErrBadChunk},                    // NUL in extension
		{"5\r\nhelloX\r\n", ErrBadChunk},                         // data longer than size
		{"5\r\nhello\n0\r\n\r\n", ErrBadChunk},                   // bare LF after data
		{"5\r\nhello\r0\r\n\r\n", ErrBadChunk},                   // bare CR after data
		{"10000000000000000\r\n", ErrBadChunk},                   // overflow
		{"fffffffffffffffff\r\n", ErrBadChunk},                   // overflow
		{"00000000000000005\r\nhello\r\n0\r\n\r\n", ErrBadChunk}, // 17 digits, as net/http
		{"5;" + strings.Repeat("a", MaxChunkLine) + "\r\n", ErrBadChunk},
		{"1;" + strings.Repeat("a", MaxChunkLine-4) + "\r\nx\r\n0\r\n\r\n", ErrBadChunk}, // line of exactly MaxChunkLine
		{"0\r\nX : y\r\n\r\n", ErrSpaceBeforeColon},                                      // trailer rules
		{"0\r\nX: y\r\n z\r\n\r\n", ErrObsFold},                                          // trailer obs-fold
		{"0\r\nX: y\n\r\n", ErrBareLF},                                                   // trailer bare LF
		{"0\r\nX: y\x00\r\n\r\n", ErrCtlChar},                                            // trailer NUL
		{"0\r\nX: y\r\n\n", ErrBareLF},                                                   // bare LF ends trailers
		{"0\r\nX: y\r\n\rX", ErrBareCR},                                                  // bare CR ends trailers
		{"0\r\nX(: y\r\n\r\n", ErrBadFieldName},                                          // bad trailer name
		{"0\r\n" + strings.Repeat("X: y\r\n", DefaultMaxFields+1) + "\r\n", ErrTooManyFields},
	}
	for _, tt := range tests {
		for _, mode := range []BodyMode{ModeForward, ModeDechunk, ModeRechunk} {
			_, n, _, err := runBody(chunked, mode, []byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Errorf("Step(%q) mode %d = %v, want %v", tt.in, mode, err, tt.err)
			}
			if n > len(tt.in) {
				t.Errorf("Step(%q) consumed %d > %d", tt.in, n, len(tt.in))
			}
		}
	}
}

func TestBodyChunkedValidEdges(t *testing.T) {
	tests := []struct{ in, payload string }{
		{"0000000000000005\r\nhello\r\n0\r\n\r\n", "hello"},
		{"A\r\n0123456789\r\n0;last\r\n\r\n", "0123456789"},
		{"0\r\nContent-Length-X: 1\r\nTrailers: 1\r\n\r\n", ""},
		{"1;" + strings.Repeat("a", MaxChunkLine-5) + "\r\nx\r\n0\r\n\r\n", "x"},
	}
	for _, tt := range tests {
		out, n, done, err := runBody(chunked, ModeDechunk, []byte(tt.in))
		if string(out) != tt.payload || n != len(tt.in) || !done || err != nil {
			t.Errorf("Step(%q) = %q, %d, %v, %v, want %q, %d, true, nil", tt.in, out, n, done, err, tt.payload, len(tt.in))
		}
	}
}

func TestBodyStickyError(t *testing.T) {
	var b Body
	b.Reset(chunked, ModeDechunk)
	if _, _, _, err := b.Step(nil, []byte("x")); err != ErrBadChunk {
		t.Fatalf("Step(x) = %v, want ErrBadChunk", err)
	}
	if _, n, done, err := b.Step(nil, []byte("0\r\n\r\n")); err != ErrBadChunk || n != 0 || done {
		t.Fatalf("Step after error = %d, %v, %v, want 0, false, ErrBadChunk", n, done, err)
	}
}

func TestBodyChunkedTrailerLimit(t *testing.T) {
	var b Body
	b.ResetLimits(chunked, ModeForward, &Limits{MaxHead: 16})
	_, _, _, err := b.Step(nil, []byte("0\r\nX-Long-Trailer: 0123456789\r\n\r\n"))
	if err != ErrHeadTooLarge {
		t.Fatalf("Step(long trailer) = %v, want ErrHeadTooLarge", err)
	}
}

func TestBodyChunkedRechunkLarge(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var src []byte
	for rest := payload; len(rest) > 0; {
		n := min(len(rest), 3000)
		src = append(src, []byte(strings.ToUpper(string(appendHex(nil, n))))...)
		src = append(src, ";ext=1\r\n"...)
		src = append(src, rest[:n]...)
		src = append(src, "\r\n"...)
		rest = rest[n:]
	}
	src = append(src, "0\r\n\r\n"...)
	re, n, done, err := runBody(chunked, ModeRechunk, src, 1, 7, 3001, 40000)
	if err != nil || !done || n != len(src) {
		t.Fatalf("rechunk = %d, %v, %v", n, done, err)
	}
	if bytes.Contains(re, []byte("ext")) {
		t.Fatalf("rechunked output kept extensions")
	}
	de, _, done, err := runBody(chunked, ModeDechunk, re)
	if err != nil || !done || !bytes.Equal(de, payload) {
		t.Fatalf("dechunk(rechunk) = %d bytes, %v, %v, want %d bytes", len(de), done, err, len(payload))
	}
}

func appendHex(dst []byte, n int) []byte {
	const digits = "0123456789abcdef"
	if n >= 16 {
		dst = appendHex(dst, n/16)
	}
	return append(dst, digits[n%16])
}

// A chunked body over Limits.MaxBody fails with ErrBodyTooLarge as soon as
// the chunk-size line that crosses it ends: none of that chunk is passed on.
func TestBodyChunkedMaxBody(t *testing.T) {
	for _, tc := range []struct {
		src     string
		max     int64
		wantOut string
		wantErr error
	}{
		{"5\r\nhello\r\n0\r\n\r\n", 5, "hello", nil},
		{"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", 5, "hello", ErrBodyTooLarge},
		{"6\r\nhello!\r\n0\r\n\r\n", 5, "", ErrBodyTooLarge},
		{"7fffffffffffffff\r\n", 1 << 20, "", ErrBodyTooLarge},
		{"3\r\nabc\r\n7fffffffffffffff\r\n", 1 << 62, "abc", ErrBodyTooLarge}, // the sum overflows
		{"6\r\nhello!\r\n0\r\n\r\n", 0, "hello!", nil},                        // no bound
	} {
		var b Body
		b.ResetLimits(chunked, ModeDechunk, &Limits{MaxBody: tc.max})
		out, _, _, err := b.Step(nil, []byte(tc.src))
		if string(out) != tc.wantOut || err != tc.wantErr {
			t.Errorf("Step(%q) with MaxBody %d = %q, %v, want %q, %v", tc.src, tc.max, out, err, tc.wantOut, tc.wantErr)
		}
	}
	if st := StatusOf(ErrBodyTooLarge); st != 413 {
		t.Errorf("StatusOf(ErrBodyTooLarge) = %d, want 413", st)
	}
}

// A trailer bound near 2^31 (max_header_size may be set that high) must not
// wrap the trailer counters and stop holding.
func TestBodyTrailerLimitNoWrap(t *testing.T) {
	var b Body
	b.ResetLimits(chunked, ModeForward, &Limits{MaxHead: 1 << 40, MaxFields: 1 << 40})
	if _, _, _, err := b.Step(nil, []byte("0\r\nX-A: 1\r\n")); err != nil {
		t.Fatal(err)
	}
	b.trLen = math.MaxInt32 - 1 // as if that much trailer had arrived
	if _, _, _, err := b.Step(nil, []byte("X-B: 2\r\n")); err != ErrHeadTooLarge {
		t.Fatalf("Step past a trailer bound of MaxInt32 = %v, want ErrHeadTooLarge", err)
	}
	b.ResetLimits(chunked, ModeForward, &Limits{MaxHead: 1 << 40, MaxFields: 1 << 40})
	b.Step(nil, []byte("0\r\n"))
	b.trFields = math.MaxInt32
	if _, _, _, err := b.Step(nil, []byte("X-C: 3\r\n")); err != ErrTooManyFields {
		t.Fatalf("Step past a trailer field bound of MaxInt32 = %v, want ErrTooManyFields", err)
	}
}
