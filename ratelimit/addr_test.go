package ratelimit

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means rejected
	}{
		{"0.0.0.0", "0.0.0.0"},
		{"192.0.2.1", "192.0.2.1"},
		{"255.255.255.255", "255.255.255.255"},
		{"256.0.0.1", ""},
		{"1.2.3", ""},
		{"1.2.3.4.5", ""},
		{"1..2.3", ""},
		{".1.2.3", ""},
		{"1.2.3.", ""},
		{"01.2.3.4", ""},
		{"1.2.3.4 ", ""},
		{"1.2.3.-4", ""},
		{"::", "::"},
		{"::1", "::1"},
		{"1::", "1::"},
		{"2001:db8::1", "2001:db8::1"},
		{"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
		{"0001:0002:0003:0004:0005:0006:0007:0008", "1:2:3:4:5:6:7:8"},
		{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
		{"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
		{"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
		{"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"},
		{"1:2:3:4:5:6:7:1.2.3.4", ""},
		{"1:2:3:4:5:1.2.3.4", ""},
		{"1:2:3:4:5:6:7:8:9", ""},
		{"1:2:3:4:5:6:7:8::", ""},
		{"1:2:3:4:5:6:7", ""},
		{"1::2::3", ""},
		{":1::", ""},
		{"1:", ""},
		{":::", ""},
		{"12345::", ""},
		{"g::", ""},
		{"fe80::1%eth0", ""},
		{"::ffff:1.2.3", ""},
		{"", ""},
		{"localhost", ""},
	}
	for _, tc := range tests {
		got, ok := parseAddr([]byte(tc.in))
		var want netip.Addr
		if tc.want != "" {
			want = netip.MustParseAddr(tc.want)
		}
		if ok != (tc.want != "") || got != want {
			t.Errorf("parseAddr(%q) = %v, %v, want %v, %v", tc.in, got, ok, want, tc.want != "")
		}
	}
}

func TestParseHostAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.1:80", "192.0.2.1"},
		{"192.0.2.1:", ""},
		{"192.0.2.1:123456", ""},
		{"192.0.2.1:8a", ""},
		{"[2001:db8::1]", "2001:db8::1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]443", ""},
		{"[2001:db8::1", ""},
		{"[192.0.2.1]", ""},
		{"2001:db8::1", "2001:db8::1"},
		{"a:80", ""},
	}
	for _, tc := range tests {
		got, ok := parseHostAddr([]byte(tc.in))
		var want netip.Addr
		if tc.want != "" {
			want = netip.MustParseAddr(tc.want)
		}
		if ok != (tc.want != "") || got != want {
			t.Errorf("parseHostAddr(%q) = %v, %v, want %v, %v", tc.in, got, ok, want, tc.want != "")
		}
	}
}

// agree checks parseAddr against net/netip (zones excluded).
func agree(t *testing.T, s string) {
	got, ok := parseAddr([]byte(s))
	want, err := netip.ParseAddr(s)
	if err == nil && want.Zone() != "" {
		err, want = errZone, netip.Addr{}
	}
	if ok != (err == nil) || got != want {
		t.Fatalf("parseAddr(%q) = %v, %v; netip.ParseAddr = %v, %v", s, got, ok, want, err)
	}
}

var errZone = errors.ErrUnsupported

// Random strings over the address alphabet, and mutations of valid addresses.
func TestParseAddrMatchesNetip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789abcdefABCDEF:.%g "
	for i := 0; i < 200000; i++ {
		var b []byte
		if i%2 == 0 {
			var a netip.Addr
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), 0, byte(rng.Uint32())})
			} else {
				var x [16]byte
				for j := range x {
					if rng.IntN(3) == 0 {
						x[j] = byte(rng.Uint32())
					}
				}
				a = netip.AddrFrom16(x)
			}
			b = []byte(a.String())
			if rng.IntN(2) == 0 && len(b) > 0 { // mutate one byte
				b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
			}
		} else {
			b = make([]byte, rng.IntN(20))
			for j := range b {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		agree(t, string(b))
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::ffff:1.2.3.4", "2001:db8::1", "1:2:3:4:5:6:7:8", "fe80::1%x", "1.2.3.04"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { agree(t, s) })
}

func TestParseZeroAllocs(t *testing.T) {
	in := [][]byte{[]byte("198.51.100.9"), []byte("2001:db8:85a3::8a2e:370:7334"), []byte("[::ffff:1.2.3.4]:80")}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, b := range in {
			parseHostAddr(b)
		}
	})
	if allocs != 0 {
		t.Errorf("parseHostAddr allocs = %v, want 0", allocs)
	}
}

func BenchmarkParseAddr(b *testing.B) {
	v4, v6 := []byte("198.51.100.9"), []byte("2001:db8:85a3::8a2e:370:7334")
	b.ReportAllocs()
	for b.Loop() {
		parseAddr(v4)
		parseAddr(v6)
	}
}
