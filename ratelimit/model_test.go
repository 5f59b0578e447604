package ratelimit

import (
	"math/rand"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

type modelClock struct{ t time.Time }

func (c *modelClock) now() time.Time { return c.t }

// The exact sliding window against a reference model (a list of admitted
// times per key): admit/deny, Remaining, RetryAfter and Reset agree for
// random traffic over several limits and windows.
func TestExactMatchesModel(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 64} {
		for _, w := range []int{1, 2, 60} {
			clk := &modelClock{t: time.Unix(1000, 0)}
			l, err := New(Config{MaxRequests: n, WindowSeconds: w, Shards: 1, MaxKeys: 1000}, clk.now)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(int64(n*1000 + w)))
			model := map[int][]int64{}
			now := int64(0)
			W := int64(w) * 1000
			iters := 200000
			if testing.Short() {
				iters = 20000
			}
			for i := 0; i < iters; i++ {
				now += int64(r.Intn(int(W)/max(n, 1)*2 + 2))
				clk.t = time.Unix(1000, 0).Add(time.Duration(now) * time.Millisecond)
				k := r.Intn(5)
				var live []int64
				for _, ts := range model[k] {
					if now-ts < W {
						live = append(live, ts)
					}
				}
				model[k] = live
				want := len(live) < n
				d := l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{1, 2, 3, byte(k)})))
				if d.Allowed != want {
					t.Fatalf("n=%d w=%d i=%d now=%d key=%d: got %v want %v (live %v)", n, w, i, now, k, d.Allowed, want, live)
				}
				if want {
					model[k] = append(model[k], now)
					if d.Remaining != n-len(live)-1 {
						t.Fatalf("remaining %d want %d", d.Remaining, n-len(live)-1)
					}
				} else {
					ra := time.Duration(live[0]+W-now) * time.Millisecond
					if d.RetryAfter != ra {
						t.Fatalf("retry %v want %v", d.RetryAfter, ra)
					}
					rs := time.Duration(live[len(live)-1]+W-now) * time.Millisecond
					if d.Reset != rs {
						t.Fatalf("reset %v want %v", d.Reset, rs)
					}
				}
			}
		}
	}
}

// Bucketed mode (large limits) never admits more than max_requests in any
// trailing window, and a denial always says to retry later.
func TestBucketedNeverOverLimit(t *testing.T) {
	clk := &modelClock{t: time.Unix(1000, 0)}
	const n, w = 100, 10
	l, _ := New(Config{MaxRequests: n, WindowSeconds: w, Shards: 1, MaxKeys: 10}, clk.now)
	r := rand.New(rand.NewSource(1))
	var adm []int64
	now := int64(0)
	k := KeyFromAddr(netip.MustParseAddr("1.1.1.1"))
	for i := 0; i < 300000; i++ {
		now += int64(r.Intn(250))
		clk.t = time.Unix(1000, 0).Add(time.Duration(now) * time.Millisecond)
		d := l.Allow(k)
		if d.Allowed {
			adm = append(adm, now)
			c := 0
			for j := len(adm) - 1; j >= 0 && now-adm[j] < w*1000; j-- {
				c++
			}
			if c > n {
				t.Fatalf("admitted %d in window", c)
			}
		} else if d.RetryAfter <= 0 {
			t.Fatalf("retry %v", d.RetryAfter)
		}
	}
}

// Times are kept as uint32 milliseconds, which wrap after 49.7 days: an
// expired entry of a key that stays busy must not count again then.
func TestExactLogSurvivesClockWrap(t *testing.T) {
	clk := &modelClock{t: time.Unix(1000, 0)}
	l, _ := New(Config{MaxRequests: 10, WindowSeconds: 60, Shards: 1, MaxKeys: 10}, clk.now)
	k := KeyFromAddr(netip.MustParseAddr("1.1.1.1"))
	for i := 0; i < 10; i++ {
		if !l.Allow(k).Allowed {
			t.Fatal("burst")
		}
	}
	clk.t = time.Unix(1000, 0).Add(59_999 * time.Millisecond)
	l.Allow(k) // denied; keeps the shard from idling out
	// then one request every 30 s
	for ms := int64(60_000); ms <= 4294980000; ms += 30_000 {
		clk.t = time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond)
		if d := l.Allow(k); !d.Allowed {
			t.Fatalf("at %d ms: %+v", ms, d)
		}
	}
	// 49.7 days in; only 2 requests in the last 60 s, limit 10
	clk.t = clk.t.Add(time.Millisecond)
	if d := l.Allow(k); !d.Allowed {
		t.Fatalf("third request in window denied: %+v", d)
	}
}

// A client sends 64 X-Forwarded-For lines and a trusted proxy adds its
// own: the key is the address the trusted proxy saw, not one the client
// wrote.
func TestXFFRightmostLinesWhenMany(t *testing.T) {
	e, err := NewExtractor(Config{TrustedProxies: []string{"10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for i := 0; i < 64; i++ {
		lines = append(lines, []byte("6.6.6."+strconv.Itoa(i)))
	}
	lines = append(lines, []byte("203.0.113.7")) // appended by the trusted proxy
	got := e.ClientIPFromValues(netip.MustParseAddr("10.0.0.1"), func(name string, i int) []byte {
		if name == HeaderXForwardedFor && i < len(lines) {
			return lines[i]
		}
		return nil
	})
	if got != netip.MustParseAddr("203.0.113.7") {
		t.Fatalf("client chose its key: %v", got)
	}
}
