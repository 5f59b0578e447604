package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injectable clock; offsets are relative to base.
type fakeClock struct{ off atomic.Int64 }

var base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return base.Add(time.Duration(c.off.Load())) }
func (c *fakeClock) Set(d time.Duration)     { c.off.Store(int64(d)) }
func (c *fakeClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

func newTest(t testing.TB, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	c := new(fakeClock)
	l, err := New(cfg, c.Now)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return l, c
}

func ipKey(s string) Key { return KeyFromAddr(netip.MustParseAddr(s)) }

type step struct {
	at        time.Duration
	allowed   bool
	remaining int
	retry     time.Duration
	reset     time.Duration
}

func runSteps(t *testing.T, l *Limiter, c *fakeClock, k Key, steps []step) {
	t.Helper()
	for i, s := range steps {
		c.Set(s.at)
		d := l.Allow(k)
		want := Decision{Allowed: s.allowed, Limit: l.Limit(), Remaining: s.remaining, RetryAfter: s.retry, Reset: s.reset}
		if d != want {
			t.Errorf("step %d: Allow at %v = %+v, want %+v", i, s.at, d, want)
		}
	}
}

const sec = time.Second

// The default 10/60 s policy, one request per second from t=0, to the second.
func TestDefaultSequence(t *testing.T) {
	l, c := newTest(t, Config{})
	var steps []step
	for i := 0; i < 10; i++ { // t=0..9: admitted, remaining 9..0
		steps = append(steps, step{at: time.Duration(i) * sec, allowed: true, remaining: 9 - i, reset: 60 * sec})
	}
	for i := 10; i < 60; i++ { // t=10..59: denied until the t=0 request is 60 s old
		steps = append(steps, step{at: time.Duration(i) * sec, retry: time.Duration(60-i) * sec, reset: time.Duration(69-i) * sec})
	}
	steps = append(steps,
		step{at: 60 * sec, allowed: true, remaining: 0, reset: 60 * sec},                                        // t=0 left the window
		step{at: 60*sec + 500*time.Millisecond, retry: 500 * time.Millisecond, reset: 59500 * time.Millisecond}, // t=1 is now oldest
		step{at: 61 * sec, allowed: true, remaining: 0, reset: 60 * sec},                                        // t=1 left
		step{at: 130 * sec, allowed: true, remaining: 9, reset: 60 * sec},                                       // (70,130] was empty
	)
	runSteps(t, l, c, ipKey("192.0.2.1"), steps)
}

// A request exactly one window old no longer counts; one millisecond younger does.
func TestWindowBoundary(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 1, WindowSeconds: 60})
	runSteps(t, l, c, ipKey("192.0.2.1"), []step{
		{at: 5 * sec, allowed: true, reset: 60 * sec},
		{at: 65*sec - time.Millisecond, retry: time.Millisecond, reset: time.Millisecond},
		{at: 65 * sec, allowed: true, reset: 60 * sec},
		{at: 65 * sec, retry: 60 * sec, reset: 60 * sec},
	})
}

func TestKeysIndependent(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 3, WindowSeconds: 10})
	keys := []Key{ipKey("192.0.2.1"), ipKey("192.0.2.2"), ipKey("2001:db8::1"), ipKey("2001:db8::2"), {}}
	for round := 0; round < 3; round++ {
		for _, k := range keys {
			if d := l.Allow(k); !d.Allowed || d.Remaining != 2-round {
				t.Fatalf("round %d: Allow(%x) = %+v, want allowed with %d remaining", round, k, d, 2-round)
			}
		}
	}
	for _, k := range keys {
		if d := l.Allow(k); d.Allowed {
			t.Errorf("Allow(%x) after 3 = %+v, want denied", k, d)
		}
	}
	c.Advance(10 * sec)
	for _, k := range keys {
		if d := l.Allow(k); !d.Allowed {
			t.Errorf("Allow(%x) one window later = %+v, want allowed", k, d)
		}
	}
	if got := l.Keys(); got != len(keys) {
		t.Errorf("Keys() = %d, want %d", got, len(keys))
	}
}

func TestIPv4MappedSameKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"10.0.0.1", "::ffff:a00:1"},
	} {
		if ka, kb := ipKey(tc.a), ipKey(tc.b); ka != kb {
			t.Errorf("KeyFromAddr(%q) = %x, KeyFromAddr(%q) = %x, want equal", tc.a, ka, tc.b, kb)
		}
	}
	if ka, kb := ipKey("192.0.2.1"), ipKey("::c000:201"); ka == kb {
		t.Errorf("KeyFromAddr(192.0.2.1) == KeyFromAddr(::c000:201), want distinct (IPv4-compatible is not IPv4-mapped)")
	}
	if k := KeyFromAddr(netip.Addr{}); k != (Key{}) {
		t.Errorf("KeyFromAddr(invalid) = %x, want zero", k)
	}
}

// reference is a brute-force sliding log: the rule in doc.go, written plainly.
type reference struct {
	n   int
	w   time.Duration
	log map[Key][]time.Duration
}

func (r *reference) allow(k Key, now time.Duration, lag time.Duration) (allowed bool, live int) {
	var keep []time.Duration
	for _, t := range r.log[k] {
		if now-t < r.w+lag {
			keep = append(keep, t)
		}
	}
	r.log[k] = keep
	if len(keep) < r.n {
		r.log[k] = append(keep, now)
		return true, len(keep)
	}
	return false, len(keep)
}

// countIn returns how many admitted requests of k lie in (now-w, now].
func (r *reference) countIn(k Key, now time.Duration) int {
	n := 0
	for _, t := range r.log[k] {
		if now-t < r.w && t <= now {
			n++
		}
	}
	return n
}

// Exact mode matches the brute-force rule decision for decision, at random
// millisecond times, including Remaining and RetryAfter.
func TestExactMatchesReference(t *testing.T) {
	for _, n := range []int{1, 2, 5, 10, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l, c := newTest(t, Config{MaxRequests: n, WindowSeconds: 3, Shards: 1})
			ref := &reference{n: n, w: 3 * sec, log: map[Key][]time.Duration{}}
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			keys := []Key{ipKey("192.0.2.1"), ipKey("192.0.2.2"), ipKey("2001:db8::3")}
			now := time.Duration(0)
			for i := 0; i < 20000; i++ {
				now += time.Duration(rng.IntN(int(6*sec/time.Duration(n)/time.Millisecond)+1)) * time.Millisecond
				c.Set(now)
				k := keys[rng.IntN(len(keys))]
				d := l.Allow(k)
				var oldest time.Duration
				if log := ref.log[k]; len(log) > 0 {
					oldest = log[0]
				}
				allowed, live := ref.allow(k, now, 0)
				if d.Allowed != allowed {
					t.Fatalf("i=%d at %v: Allow = %+v, reference allowed=%v (live %d)", i, now, d, allowed, live)
				}
				if allowed && d.Remaining != n-live-1 {
					t.Fatalf("i=%d: Remaining = %d, want %d", i, d.Remaining, n-live-1)
				}
				if !allowed {
					// the oldest live entry: the first one in the pruned log
					oldest = ref.log[k][0]
					if want := oldest + 3*sec - now; d.RetryAfter != want {
						t.Fatalf("i=%d at %v: RetryAfter = %v, want %v", i, now, d.RetryAfter, want)
					}
				}
			}
		})
	}
}

// Bucketed mode (N > 64) never admits more than N in any trailing window, and
// denies only when the rule stretched by one bucket (W/16) would deny too.
func TestBucketedBounds(t *testing.T) {
	const n = 100
	l, c := newTest(t, Config{MaxRequests: n, WindowSeconds: 16, Shards: 1})
	lag := 1 * sec // ceil(16 s / 16)
	admitted := &reference{n: n, w: 16 * sec, log: map[Key][]time.Duration{}}
	rng := rand.New(rand.NewPCG(7, 7))
	keys := []Key{ipKey("192.0.2.1"), ipKey("2001:db8::3")}
	now := time.Duration(0)
	denied := 0
	for i := 0; i < 50000; i++ {
		now += time.Duration(rng.IntN(40)) * time.Millisecond
		c.Set(now)
		k := keys[rng.IntN(len(keys))]
		d := l.Allow(k)
		if d.Allowed {
			admitted.log[k] = append(admitted.log[k], now)
			if got := admitted.countIn(k, now); got > n {
				t.Fatalf("i=%d at %v: %d admitted in the trailing window, limit %d", i, now, got, n)
			}
			if d.Remaining < 0 || d.Remaining >= n {
				t.Fatalf("i=%d: Remaining = %d, want in [0,%d)", i, d.Remaining, n)
			}
		} else {
			denied++
			// Count own admissions in (now-W-lag, now]: must be >= n.
			cnt := 0
			for _, t0 := range admitted.log[k] {
				if now-t0 < 16*sec+lag {
					cnt++
				}
			}
			if cnt < n {
				t.Fatalf("i=%d at %v: denied with only %d admitted in the stretched window", i, now, cnt)
			}
			if d.RetryAfter <= 0 || d.RetryAfter > 16*sec+lag {
				t.Fatalf("i=%d: RetryAfter = %v, want in (0, %v]", i, d.RetryAfter, 16*sec+lag)
			}
		}
	}
	if denied == 0 {
		t.Fatalf("no request was denied; the test load is too light to check anything")
	}
}

// Bucketed mode, to the bucket: 100 requests at t=0.5 s with a 16 s window
// (1 s buckets) are held until 17 s, the end of bucket 0 plus the window.
func TestBucketedSequence(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 100, WindowSeconds: 16})
	k := ipKey("192.0.2.9")
	c.Set(500 * time.Millisecond)
	for i := 0; i < 100; i++ {
		if d := l.Allow(k); !d.Allowed || d.Remaining != 99-i {
			t.Fatalf("request %d: Allow = %+v, want allowed with %d remaining", i, d, 99-i)
		}
	}
	runSteps(t, l, c, k, []step{
		{at: 500 * time.Millisecond, retry: 16500 * time.Millisecond, reset: 16500 * time.Millisecond},
		{at: 16999 * time.Millisecond, retry: time.Millisecond, reset: time.Millisecond},
		{at: 17 * sec, allowed: true, remaining: 99, reset: 17 * sec}, // bucket 17 ends at 18 s, +16 s
	})
}

func TestClockBackwards(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 1, WindowSeconds: 10})
	k := ipKey("192.0.2.1")
	c.Set(100 * sec)
	l.Allow(k)
	c.Set(50 * sec) // the clock jumps back: treated as 100 s
	if d := l.Allow(k); d.Allowed || d.RetryAfter != 10*sec {
		t.Errorf("Allow after clock went back = %+v, want denied, RetryAfter 10s", d)
	}
	c.Set(110 * sec)
	if d := l.Allow(k); !d.Allowed {
		t.Errorf("Allow at 110s = %+v, want allowed", d)
	}
}

func TestDisabled(t *testing.T) {
	off := false
	l, _ := newTest(t, Config{Enabled: &off, MaxRequests: 1})
	for i := 0; i < 5; i++ {
		if d := l.Allow(Key{}); !d.Allowed || d.Remaining != 1 {
			t.Fatalf("disabled Allow = %+v, want allowed", d)
		}
	}
	if got := l.AppendHeaders(nil, Decision{}); len(got) != 0 {
		t.Errorf("disabled AppendHeaders = %q, want nothing", got)
	}
	if l.Keys() != 0 {
		t.Errorf("disabled Keys() = %d, want 0", l.Keys())
	}
}

// The sweep releases expired keys: driven by Allow on other keys, and by Sweep.
func TestSweepReleasesExpiredKeys(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 2, WindowSeconds: 10, Shards: 4})
	for i := 0; i < 1000; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	if got := l.Keys(); got != 1000 {
		t.Fatalf("Keys() = %d, want 1000", got)
	}
	c.Advance(9 * sec) // keep every shard busy so none is reset wholesale
	for i := 0; i < 1000; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})))
	}
	c.Advance(2 * sec) // the first 1000 have expired, the second 1000 have not
	for i := 0; i < 600; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})))
	}
	if got := l.Keys(); got >= 2000 {
		t.Errorf("Keys() after 600 sweeping Allows = %d, want < 2000", got)
	}
	freed := l.Sweep(1 << 20)
	if got := l.Keys(); got != 1000 {
		t.Errorf("Keys() after Sweep (freed %d) = %d, want 1000", freed, got)
	}
	c.Advance(10 * sec)
	l.Sweep(1 << 20)
	if got := l.Keys(); got != 0 {
		t.Errorf("Keys() after everything expired and Sweep = %d, want 0", got)
	}
}

// Slots released by the sweep are reused, so the slab does not grow.
func TestSlotsReused(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 2, WindowSeconds: 10, Shards: 1})
	for i := 0; i < 100; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})))
	}
	c.Set(9 * sec)
	b := ipKey("192.0.2.1")
	l.Allow(b)
	c.Set(11 * sec) // the 100 expired; b keeps the shard from being idle
	for i := 0; i < 60; i++ {
		l.Allow(b) // 60 Allows sweep 120 slots
	}
	if got := l.Keys(); got != 1 {
		t.Fatalf("Keys() = %d, want 1", got)
	}
	for i := 0; i < 100; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})))
	}
	if got := l.shards[0].nslots; got != 101 {
		t.Errorf("slots = %d after 100 keys replaced 100 expired ones, want 101", got)
	}
}

// A shard idle for a whole window is dropped whole on its next request.
func TestIdleShardReset(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 2, WindowSeconds: 10, Shards: 1})
	for i := 0; i < 500; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	c.Advance(10 * sec)
	k := ipKey("192.0.2.1")
	if d := l.Allow(k); !d.Allowed {
		t.Fatalf("Allow = %+v, want allowed", d)
	}
	if got := l.Keys(); got != 1 {
		t.Errorf("Keys() after an idle window = %d, want 1", got)
	}
	if got := l.shards[0].nslots; got != 1 {
		t.Errorf("slots after reset = %d, want 1", got)
	}
}

// max_keys: a full shard reclaims an expired key if it finds one, and
// otherwise drops the key that expires soonest, so that a new client is
// never shut out; keys used since are kept.
func TestMaxKeys(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 2, WindowSeconds: 10, MaxKeys: 8, Shards: 1})
	key := func(i int) Key { return KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})) }
	for i := 0; i < 8; i++ {
		if d := l.Allow(key(i)); !d.Allowed {
			t.Fatalf("Allow(key %d) = %+v, want allowed", i, d)
		}
		c.Advance(sec) // key 0 is the oldest
	}
	// Keys 1-7 are used again: key 0 (used at 0 s) expires soonest.
	for i := 1; i < 8; i++ {
		l.Allow(key(i))
	}
	if d := l.Allow(key(100)); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("Allow(new key, full) = %+v, want allowed with 1 remaining", d)
	}
	if l.Dropped() != 1 || l.Evicted() != 0 || l.Keys() != 8 {
		t.Errorf("Dropped, Evicted, Keys = %d, %d, %d, want 1, 0, 8", l.Dropped(), l.Evicted(), l.Keys())
	}
	// Every other key kept its count: each used 2 of 2.
	for i := 1; i < 8; i++ {
		if d := l.Allow(key(i)); d.Allowed {
			t.Errorf("Allow(key %d) after the drop = %+v, want denied: its count must be kept", i, d)
		}
	}
	if d := l.Allow(key(100)); !d.Allowed || d.Remaining != 0 {
		t.Errorf("Allow(new key) again = %+v, want allowed with 0 remaining", d)
	}
	c.Advance(5 * sec)
	l.Allow(key(100))  // denied, but the shard stays in use
	c.Advance(6 * sec) // every key expired, the shard not idle for a window
	if d := l.Allow(key(101)); !d.Allowed {
		t.Fatalf("Allow(new key) after expiry = %+v, want allowed", d)
	}
	if l.Evicted() == 0 {
		t.Errorf("Evicted() = 0, want > 0 after reclaiming an expired key")
	}
	if l.Dropped() != 1 {
		t.Errorf("Dropped() = %d, want 1: an expired key was there to reclaim", l.Dropped())
	}
	if got := l.Keys(); got > 8 {
		t.Errorf("Keys() = %d, want <= max_keys 8", got)
	}
}

// A new key is tracked even when the table is full and its own shard has no
// key to give up: admitted untracked, its client would be unlimited for as
// long as the table stays full.
func TestMaxKeysNewKeyAlwaysTracked(t *testing.T) {
	// Every key in other shards: 64 keys, 64 shards.
	l, _ := newTest(t, Config{MaxRequests: 1, WindowSeconds: 60, MaxKeys: 64, Shards: 64})
	for i := 0; i < 64; i++ {
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})))
	}
	escaped := 0
	for v := 0; v < 500; v++ {
		if admittedOf(l, KeyFromAddr(netip.AddrFrom4([4]byte{192, 0, byte(v >> 8), byte(v)})), 5) > 1 {
			escaped++
		}
		if n := l.Keys(); n > 64+64 {
			t.Fatalf("Keys() = %d, want <= max_keys + shards = 128", n)
		}
	}
	if escaped > 0 {
		t.Errorf("empty shards: %d of 500 new clients had more than max_requests = 1 of 5 back-to-back requests admitted, want 0", escaped)
	}

	// A sparse shard: its live keys lie beyond the fullProbe slots before
	// the hand, which are all free.
	l, _ = newTest(t, Config{MaxRequests: 1, WindowSeconds: 60, MaxKeys: 100, Shards: 2})
	inShard := func(want uint64, from int) (Key, int) {
		for i := from; ; i++ {
			k := KeyFromAddr(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}))
			if l.hash(&k)>>l.shift == want {
				return k, i + 1
			}
		}
	}
	next := 0
	var k Key
	for i := 0; i < 100; i++ {
		k, next = inShard(0, next)
		l.Allow(k)
	}
	s0 := &l.shards[0]
	if s0.nslots != 100 {
		t.Fatalf("shard 0 has %d slots, want 100", s0.nslots)
	}
	for i := uint32(0); i < 98; i++ { // keep slots 98 and 99
		l.release(s0, i)
		l.keys.Add(-1)
	}
	for i := 0; i < 98; i++ {
		k, next = inShard(1, next)
		l.Allow(k)
	}
	s0.hand = 0 // Allow sweeps the fullProbe slots from here, then looks back over them
	k, _ = inShard(0, next)
	if n := admittedOf(l, k, 5); n != 1 || l.Keys() != 100 {
		t.Errorf("sparse shard: new key admitted %d of 5 back-to-back requests with max_requests = 1, Keys() = %d; want 1 and 100 (a key dropped for it)", n, l.Keys())
	}
}

// admittedOf sends n requests for k at the same instant and counts the
// admitted ones.
func admittedOf(l *Limiter, k Key, n int) int {
	admitted := 0
	for i := 0; i < n; i++ {
		if l.Allow(k).Allowed {
			admitted++
		}
	}
	return admitted
}

// Timestamps are uint32 ms (49.7 days). A key last seen just over 2^32 ms ago,
// in a shard kept busy just often enough not to be reset, must not look fresh.
func TestClockWrap(t *testing.T) {
	l, c := newTest(t, Config{MaxRequests: 1, WindowSeconds: MaxWindowSeconds, Shards: 1})
	x := ipKey("192.0.2.1")
	for i := 0; i < 300; i++ { // fill the slab so the hand needs many requests to get round
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	l.Allow(x)
	busy := ipKey("192.0.2.2")
	w := time.Duration(MaxWindowSeconds) * sec
	wrap := time.Duration(1<<32) * time.Millisecond
	for at := w - sec; at < wrap; at += w - sec {
		c.Set(at)
		l.Allow(busy)
	}
	c.Set(wrap + sec)
	if d := l.Allow(x); !d.Allowed {
		t.Fatalf("Allow(x) 2^32 ms + 1 s after its only request = %+v, want allowed", d)
	}
}

// Many goroutines on shared and distinct keys: with the clock frozen, each
// key is admitted exactly max_requests times per window, never more.
func TestConcurrentLimit(t *testing.T) {
	const n, workers, perWorker = 10, 16, 400
	l, c := newTest(t, Config{MaxRequests: n, WindowSeconds: 60, Shards: 4})
	shared := []Key{ipKey("192.0.2.1"), ipKey("192.0.2.2"), ipKey("2001:db8::1")}
	for phase := 0; phase < 2; phase++ {
		c.Set(time.Duration(phase) * 60 * sec)
		var admitted [3]atomic.Int64
		var own [workers]int
		var wg sync.WaitGroup
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := KeyFromAddr(netip.AddrFrom4([4]byte{10, 9, byte(phase), byte(g)}))
				for i := 0; i < perWorker; i++ {
					j := (g + i) % len(shared)
					if l.Allow(shared[j]).Allowed {
						admitted[j].Add(1)
					}
					if l.Allow(mine).Allowed {
						own[g]++
					}
				}
			}()
		}
		wg.Wait()
		for j := range admitted {
			if got := admitted[j].Load(); got != n {
				t.Errorf("phase %d: shared key %d admitted %d times, want %d", phase, j, got, n)
			}
		}
		for g, got := range own {
			if got != n {
				t.Errorf("phase %d: worker %d's own key admitted %d times, want %d", phase, g, got, n)
			}
		}
	}
}

// With a moving real clock, no key is ever admitted more than max_requests
// times within any window (checked from timestamps taken around each call).
func TestConcurrentRealClock(t *testing.T) {
	const n = 5
	l, err := New(Config{MaxRequests: n, WindowSeconds: 1, Shards: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := ipKey("192.0.2.1")
	var mu sync.Mutex
	var times []time.Time // admission completion times
	var wg sync.WaitGroup
	deadline := time.Now().Add(300 * time.Millisecond)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				before := time.Now()
				if l.Allow(k).Allowed {
					mu.Lock()
					times = append(times, before)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(times) < n {
		t.Fatalf("only %d admitted in 300ms, want at least %d", len(times), n)
	}
	// Every admission started within 300 ms, well inside one 1 s window.
	if len(times) != n {
		t.Errorf("admitted %d times within one window, want exactly %d", len(times), n)
	}
}

func TestAllowZeroAllocs(t *testing.T) {
	for _, n := range []int{10, 1000} {
		l, c := newTest(t, Config{MaxRequests: n})
		k := ipKey("192.0.2.1")
		l.Allow(k)
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			i++
			c.Set(time.Duration(i) * time.Millisecond)
			l.Allow(k)
		})
		if allocs != 0 {
			t.Errorf("max_requests=%d: Allow(existing key) allocs = %v, want 0", n, allocs)
		}
	}
}

func TestAllowAtMatchesAllow(t *testing.T) {
	a, c := newTest(t, Config{MaxRequests: 3, WindowSeconds: 10})
	b, _ := newTest(t, Config{MaxRequests: 3, WindowSeconds: 10})
	k := ipKey("192.0.2.1")
	for i := 0; i < 40; i++ {
		c.Set(time.Duration(i) * 700 * time.Millisecond)
		if da, db := a.Allow(k), b.AllowAt(k, c.Now()); da != db {
			t.Fatalf("i=%d: Allow = %+v, AllowAt = %+v, want equal", i, da, db)
		}
	}
}
