package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
)

// fields is a request header: name -> field lines in order. Lookup is
// case-insensitive, as RFC 9110 section 5.1 requires.
type fields map[string][]string

func (f fields) values(name string, i int) []byte {
	for k, v := range f {
		if strings.EqualFold(k, name) && i < len(v) {
			return []byte(v[i])
		}
	}
	return nil
}

func (f fields) get(name string) []byte { return f.values(name, 0) }

func newExtractor(t testing.TB, cfg Config) *Extractor {
	t.Helper()
	e, err := NewExtractor(cfg)
	if err != nil {
		t.Fatalf("NewExtractor(%+v) = %v", cfg, err)
	}
	return e
}

var nginx = []string{"10.0.0.0/8", "192.168.1.1", "2001:db8:ffff::/48"}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		peer    string
		h       fields
		want    string
	}{
		{"no trust, no headers", nil, "203.0.113.7", nil, "203.0.113.7"},
		{"no trust ignores XFF", nil, "203.0.113.7", fields{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.7"},
		{"untrusted peer spoofing XFF", nginx, "203.0.113.7", fields{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.7"},
		{"untrusted peer spoofing X-Real-IP", nginx, "203.0.113.7", fields{"X-Real-IP": {"1.2.3.4"}}, "203.0.113.7"},
		{"untrusted mapped peer", nginx, "::ffff:203.0.113.7", fields{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.7"},
		{"trusted peer, one hop", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9"},
		{"trusted mapped peer", nginx, "::ffff:10.1.2.3", fields{"X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9"},
		{"trusted peer, no headers", nginx, "10.1.2.3", nil, "10.1.2.3"},
		{"client prepends a spoofed hop", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9"}}, "198.51.100.9"},
		{"multi-hop through trusted proxies", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9, 10.9.9.9, 192.168.1.1"}}, "198.51.100.9"},
		{"spoofed trusted address left of client", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"10.0.0.1, 198.51.100.9, 10.9.9.9"}}, "198.51.100.9"},
		{"all hops trusted: leftmost", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5"},
		{"IPv6 client", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"2001:db8::1"}}, "2001:db8::1"},
		{"IPv6 trusted hop", nginx, "2001:db8:ffff::10", fields{"X-Forwarded-For": {"2001:db8:1::5, 2001:db8:ffff::20"}}, "2001:db8:1::5"},
		{"mapped client", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"::ffff:198.51.100.9"}}, "198.51.100.9"},
		{"ports and brackets", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"[2001:db8::1]:4711, 10.0.0.9:80"}}, "2001:db8::1"},
		{"v4 with port", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"198.51.100.9:5555"}}, "198.51.100.9"},
		{"whitespace and empty elements", nginx, "10.1.2.3", fields{"X-Forwarded-For": {" ,\t198.51.100.9 ,, "}}, "198.51.100.9"},
		{"garbage beyond the client is never read", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"not-an-ip, 198.51.100.9"}}, "198.51.100.9"},
		{"garbage from a trusted hop: stop at that hop", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6, unknown, 10.0.0.9"}}, "10.0.0.9"},
		{"garbage right at the peer", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"1.2.3.4, unknown"}}, "10.1.2.3"},
		{"leading zeros are garbage", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"010.1.1.1"}}, "10.1.2.3"},
		{"zone is garbage", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"fe80::1%eth0"}}, "10.1.2.3"},
		{"several lines, last is rightmost", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6", "198.51.100.9, 10.0.0.7"}}, "198.51.100.9"},
		{"several lines, spoof in first", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6, 10.0.0.1", "10.0.0.7"}}, "6.6.6.6"},
		{"case-insensitive name", nginx, "10.1.2.3", fields{"x-forwarded-for": {"198.51.100.9"}}, "198.51.100.9"},
		{"X-Real-IP from trusted peer", nginx, "10.1.2.3", fields{"X-Real-IP": {" 198.51.100.9 "}}, "198.51.100.9"},
		{"XFF wins over X-Real-IP", nginx, "10.1.2.3", fields{"X-Real-IP": {"5.5.5.5"}, "X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9"},
		{"empty XFF falls to X-Real-IP", nginx, "10.1.2.3", fields{"X-Real-IP": {"5.5.5.5"}, "X-Forwarded-For": {" , "}}, "5.5.5.5"},
		{"two X-Real-IP lines are ambiguous", nginx, "10.1.2.3", fields{"X-Real-IP": {"5.5.5.5", "6.6.6.6"}}, "10.1.2.3"},
		{"bad X-Real-IP", nginx, "10.1.2.3", fields{"X-Real-IP": {"localhost"}}, "10.1.2.3"},
		{"peer zone dropped", nil, "fe80::1%eth0", nil, "fe80::1"},
		// real_ip_header = "X-Real-IP" (the name's "real-ip:" prefix): a
		// proxy that sets X-Real-IP and passes the client's XFF on.
		{"real-ip: X-Real-IP wins over a client's XFF", nginx, "10.1.2.3", fields{"X-Real-IP": {"198.51.100.9"}, "X-Forwarded-For": {"6.6.6.6"}}, "198.51.100.9"},
		{"real-ip: XFF alone is not read", nginx, "10.1.2.3", fields{"X-Forwarded-For": {"6.6.6.6"}}, "10.1.2.3"},
		{"real-ip: with port", nginx, "10.1.2.3", fields{"X-Real-IP": {"[2001:db8::1]:443"}}, "2001:db8::1"},
		{"real-ip: two lines are ambiguous", nginx, "10.1.2.3", fields{"X-Real-IP": {"5.5.5.5", "6.6.6.6"}}, "10.1.2.3"},
		{"real-ip: bad value", nginx, "10.1.2.3", fields{"X-Real-IP": {"5.5.5.5, 6.6.6.6"}}, "10.1.2.3"},
		{"real-ip: untrusted peer", nginx, "203.0.113.7", fields{"X-Real-IP": {"1.2.3.4"}}, "203.0.113.7"},
	}
	for _, tc := range tests {
		// Whole addresses: TestIPv6PrefixKey covers ipv6_prefix.
		cfg := Config{TrustedProxies: tc.trusted, IPv6Prefix: 128}
		if strings.HasPrefix(tc.name, "real-ip:") {
			cfg.RealIPHeader = "x-real-ip"
		}
		e := newExtractor(t, cfg)
		peer := netip.MustParseAddr(tc.peer)
		want := netip.MustParseAddr(tc.want)
		if got := e.ClientIPFromValues(peer, tc.h.values); got != want {
			t.Errorf("%s: ClientIPFromValues(%s, %v) = %v, want %v", tc.name, tc.peer, tc.h, got, want)
		}
		k, ok := e.KeyFromValues(peer, tc.h.values)
		if !ok || k != KeyFromAddr(want) {
			t.Errorf("%s: KeyFromValues(%s, %v) = %x, %v, want %x, true", tc.name, tc.peer, tc.h, k, ok, KeyFromAddr(want))
		}
		// The single-value API sees only the first line of each field.
		first := fields{}
		for name, v := range tc.h {
			first[name] = v[:1]
		}
		if got, want := e.ClientIP(peer, tc.h.get), e.ClientIPFromValues(peer, first.values); got != want {
			t.Errorf("%s: ClientIP(%s) = %v, want %v (first lines only)", tc.name, tc.peer, got, want)
		}
	}
}

func TestClientIPInvalidPeer(t *testing.T) {
	e := newExtractor(t, Config{TrustedProxies: nginx})
	if got := e.ClientIP(netip.Addr{}, fields{"X-Forwarded-For": {"1.2.3.4"}}.get); got.IsValid() {
		t.Errorf("ClientIP(invalid peer) = %v, want invalid", got)
	}
	if k, ok := e.Key(netip.Addr{}, fields{}.get); ok || k != (Key{}) {
		t.Errorf("Key(invalid peer) = %x, %v, want zero, false", k, ok)
	}
}

func TestHeaderKey(t *testing.T) {
	e := newExtractor(t, Config{KeyExtractor: "header:X-API-Key", TrustedProxies: nginx})
	if e.Header() != "X-API-Key" {
		t.Fatalf("Header() = %q, want X-API-Key", e.Header())
	}
	peer := netip.MustParseAddr("10.1.2.3")
	key := func(h fields) Key {
		k, ok := e.Key(peer, h.get)
		if !ok {
			t.Fatalf("Key(%v) ok = false, want true", h)
		}
		return k
	}
	a := key(fields{"X-API-Key": {"alpha"}})
	if b := key(fields{"x-api-key": {"  alpha\t"}}); a != b {
		t.Errorf("Key(alpha) = %x, Key(' alpha ') = %x, want equal (OWS trimmed)", a, b)
	}
	if b := key(fields{"X-API-Key": {"beta"}}); a == b {
		t.Errorf("Key(alpha) == Key(beta) = %x, want distinct", a)
	}
	if b := key(fields{"X-API-Key": {"alpha"}, "X-Forwarded-For": {"1.1.1.1"}}); a != b {
		t.Errorf("header key depends on the client address: %x vs %x", a, b)
	}
	// Missing or empty header: falls back to the client-IP key.
	for _, h := range []fields{{}, {"X-API-Key": {""}}, {"X-API-Key": {"  "}}} {
		h["X-Forwarded-For"] = []string{"198.51.100.9"}
		if got, want := key(h), ipKey("198.51.100.9"); got != want {
			t.Errorf("Key(%v) = %x, want client-IP fallback %x", h, got, want)
		}
	}
	// A different extractor (other seed) hashes differently: keys are not predictable.
	e2 := newExtractor(t, Config{KeyExtractor: "header:X-API-Key"})
	if k2, _ := e2.Key(peer, fields{"X-API-Key": {"alpha"}}.get); k2 == a {
		t.Errorf("two extractors gave the same hash %x; want per-extractor seeds", a)
	}
}

func TestExtractorZeroAllocs(t *testing.T) {
	e := newExtractor(t, Config{TrustedProxies: nginx})
	peer := netip.MustParseAddr("10.1.2.3")
	xff := []byte("6.6.6.6, 2001:db8::1, 198.51.100.9, 10.9.9.9, 192.168.1.1")
	get := func(name string) []byte {
		if name == HeaderXForwardedFor {
			return xff
		}
		return nil
	}
	var k Key
	allocs := testing.AllocsPerRun(1000, func() { k, _ = e.Key(peer, get) })
	if allocs != 0 {
		t.Errorf("Key with trusted-proxy XFF allocs = %v, want 0", allocs)
	}
	if k != ipKey("198.51.100.9") {
		t.Errorf("Key = %x, want 198.51.100.9's", k)
	}
	h := newExtractor(t, Config{KeyExtractor: "header:X-API-Key"})
	api := []byte("0123456789abcdef0123456789abcdef")
	allocs = testing.AllocsPerRun(1000, func() {
		k, _ = h.Key(peer, func(string) []byte { return api })
	})
	if allocs != 0 {
		t.Errorf("Key with header extractor allocs = %v, want 0", allocs)
	}
}

func BenchmarkExtractorXFF(b *testing.B) {
	e := newExtractor(b, Config{TrustedProxies: nginx})
	peer := netip.MustParseAddr("10.1.2.3")
	xff := []byte("6.6.6.6, 2001:db8::1, 198.51.100.9, 10.9.9.9, 192.168.1.1")
	get := func(name string) []byte {
		if name == HeaderXForwardedFor {
			return xff
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Key(peer, get)
	}
}

// IPv6 clients are keyed by their first ipv6_prefix bits (default 64), so
// that one subscriber's /64 is one client; IPv4 addresses stay whole.
func TestIPv6PrefixKey(t *testing.T) {
	for _, tc := range []struct {
		bits       int
		a, b       string
		sameClient bool
	}{
		{0, "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{0, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{64, "2001:db8:1:2::1", "2001:db8:1:2::2", true},
		{56, "2001:db8:1:2::1", "2001:db8:1:ff::1", true},
		{56, "2001:db8:1:2::1", "2001:db8:1:100::1", false},
		{128, "2001:db8:1:2::1", "2001:db8:1:2::2", false},
		{0, "10.0.0.1", "10.0.0.2", false},
		{0, "::ffff:10.0.0.1", "10.0.0.1", true},
	} {
		e := newExtractor(t, Config{IPv6Prefix: tc.bits})
		ka, _ := e.Key(netip.MustParseAddr(tc.a), fields{}.get)
		kb, _ := e.Key(netip.MustParseAddr(tc.b), fields{}.get)
		if (ka == kb) != tc.sameClient {
			t.Errorf("ipv6_prefix %d: Key(%s) == Key(%s) is %v, want %v", tc.bits, tc.a, tc.b, ka == kb, tc.sameClient)
		}
	}
	e := newExtractor(t, Config{})
	peer := netip.MustParseAddr("2001:db8::1")
	if allocs := testing.AllocsPerRun(1000, func() { e.Key(peer, fields{}.get) }); allocs != 0 {
		t.Errorf("Key for an IPv6 peer allocs = %v, want 0", allocs)
	}
	c := Config{IPv6Prefix: 129}
	if err := c.Validate(); err == nil {
		t.Error("Validate(ipv6_prefix 129) = nil, want an error")
	}
}
