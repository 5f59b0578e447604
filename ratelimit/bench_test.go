package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mutexLimiter is the naive baseline: one mutex, map[string][]time.Time.
type mutexLimiter struct {
	mu  sync.Mutex
	m   map[string][]time.Time
	n   int
	win time.Duration
}

func (b *mutexLimiter) Allow(key string) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	log := b.m[key]
	i := 0
	for i < len(log) && now.Sub(log[i]) >= b.win {
		i++
	}
	log = log[i:]
	ok := len(log) < b.n
	if ok {
		log = append(log, now)
	}
	b.m[key] = log
	return ok
}

const benchKeys = 4096

func benchKeySet() ([]Key, []string) {
	keys := make([]Key, benchKeys)
	strs := make([]string, benchKeys)
	for i := range keys {
		keys[i] = KeyFromAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		strs[i] = string(keys[i][:])
	}
	return keys, strs
}

var goroutineSeq atomic.Uint32

// BenchmarkAllowParallel: every goroutine decides for keys spread over 4096
// tracked clients, 10/60 s, real clock. Compare pace with baseline:
//
//	go test -bench AllowParallel -benchmem -cpu 2,8 ./ratelimit/
func BenchmarkAllowParallel(b *testing.B) {
	keys, strs := benchKeySet()
	b.Run("pace", func(b *testing.B) {
		l, err := New(Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			l.Allow(k)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := goroutineSeq.Add(977)
			for pb.Next() {
				i += 7919
				l.Allow(keys[i%benchKeys])
			}
		})
	})
	b.Run("baseline", func(b *testing.B) {
		l := &mutexLimiter{m: map[string][]time.Time{}, n: 10, win: 60 * time.Second}
		for _, s := range strs {
			l.Allow(s)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := goroutineSeq.Add(977)
			for pb.Next() {
				i += 7919
				l.Allow(strs[i%benchKeys])
			}
		})
	})
}

// BenchmarkAllow is the single-goroutine cost of a decision on a tracked key.
func BenchmarkAllow(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(map[int]string{10: "exact10", 1000: "buckets1000"}[n], func(b *testing.B) {
			l, err := New(Config{MaxRequests: n}, nil)
			if err != nil {
				b.Fatal(err)
			}
			keys, _ := benchKeySet()
			for _, k := range keys {
				l.Allow(k)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i += 7919
				l.Allow(keys[i%benchKeys])
			}
		})
	}
}

func BenchmarkAppendHeaders(b *testing.B) {
	l, _ := New(Config{}, nil)
	d := Decision{Limit: 10, RetryAfter: 7 * time.Second, Reset: 42 * time.Second}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = l.AppendHeaders(buf[:0], d)
	}
}
