package ratelimit

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// maxBytesPerKey is the documented bound (doc.go) for a 10/60 s limiter.
const maxBytesPerKey = 100

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 1,000,000 distinct keys under 10/60 s: under 100 bytes per key, and after
// the window passes the incremental sweep brings the tracked keys, and the
// heap, back down.
func TestMemoryPerKey(t *testing.T) {
	if raceEnabled {
		t.Skip("heap sizes are not representative under -race")
	}
	const n = 1_000_000
	c := new(fakeClock)
	before := heapAlloc()
	l, err := New(Config{}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.Set(time.Duration(i) * 50 * time.Microsecond) // spread over 0..50 s
		l.Allow(KeyFromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})))
	}
	if got := l.Keys(); got != n {
		t.Fatalf("Keys() = %d, want %d", got, n)
	}
	full := heapAlloc()
	perKey := float64(full-before) / n
	t.Logf("%d keys: %.1f bytes/key (heap %d -> %d)", n, perKey, before, full)
	if perKey > maxBytesPerKey {
		t.Errorf("memory per key = %.1f bytes, want <= %d", perKey, maxBytesPerKey)
	}

	// At 100 s the keys admitted before 40 s have expired (about 800,000).
	c.Set(100 * time.Second)
	sweepAll(l)
	if got := l.Keys(); got < n*15/100 || got > n*25/100 {
		t.Errorf("Keys() at 100 s = %d, want about %d (admitted in (40 s, 50 s))", got, n/5)
	}
	// At 111 s every key has expired.
	c.Set(111 * time.Second)
	sweepAll(l)
	if got := l.Keys(); got != 0 {
		t.Errorf("Keys() at 111 s = %d, want 0", got)
	}
	after := heapAlloc()
	t.Logf("heap after sweep: %d (%.1f bytes/key left)", after, float64(after-min(after, before))/n)
	if after > before+(full-before)/20 {
		t.Errorf("heap after sweeping every key = %d, want within 5%% of the start %d (full %d)", after, before, full)
	}
	runtime.KeepAlive(l)
}

// sweepAll drives the incremental sweep in steps of 1024 slots per shard
// until every shard's hand has gone round once.
func sweepAll(l *Limiter) {
	most := uint32(0)
	for i := range l.shards {
		most = max(most, l.shards[i].nslots)
	}
	for range most/1024 + 1 {
		l.Sweep(1024)
	}
}
