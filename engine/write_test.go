package engine

import "testing"

func TestSkip(t *testing.T) {
	for _, tc := range []struct {
		n            int
		wantA, wantB string
	}{
		{0, "head", "body"},
		{2, "ad", "body"},
		{4, "body", ""},
		{6, "dy", ""},
		{8, "", ""},
	} {
		a, b := skip([]byte("head"), []byte("body"), tc.n)
		if string(a) != tc.wantA || string(b) != tc.wantB {
			t.Errorf("skip(%q, %q, %d) = %q, %q, want %q, %q", "head", "body", tc.n, a, b, tc.wantA, tc.wantB)
		}
	}
	if a, b := skip(nil, []byte("body"), 1); string(a) != "ody" || b != nil {
		t.Errorf("skip(nil, %q, 1) = %q, %q, want %q, nil", "body", a, b, "ody")
	}
}
