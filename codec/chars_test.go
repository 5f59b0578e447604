package codec

import (
	"bytes"
	"testing"
)

// TestScanEnds checks the eight-bytes-at-a-time scanners against the tables
// for every byte value at every position of a word.
func TestScanEnds(t *testing.T) {
	naive := func(tab *[256]bool, v []byte) int {
		for i, c := range v {
			if !tab[c] {
				return i
			}
		}
		return len(v)
	}
	buf := bytes.Repeat([]byte("a"), 24)
	for p := range buf {
		for c := range 256 {
			buf[p] = byte(c)
			if got, want := valueEnd(buf), naive(&valueTab, buf); got != want {
				t.Fatalf("valueEnd(%q) = %d, want %d", buf, got, want)
			}
			if got, want := targetEnd(buf), naive(&targetTab, buf); got != want {
				t.Fatalf("targetEnd(%q) = %d, want %d", buf, got, want)
			}
		}
		buf[p] = 'a'
	}
}
