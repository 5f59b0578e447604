package ratelimit

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

var (
	// ErrInvalidConfig is matched (errors.Is) by every error Validate, New
	// and NewExtractor return for a bad Config.
	ErrInvalidConfig = errors.New("ratelimit: invalid config")
)

// Key is a fixed-size client key: an IPv4 address as IPv4-mapped IPv6
// (::ffff:a.b.c.d), an IPv6 address as is, a header value as a seeded
// 128-bit hash. The zero Key is an ordinary key (the address ::).
type Key [16]byte

// KeyFromAddr returns the key for a: IPv4 and IPv4-mapped IPv6 addresses
// give the same key; the zone is ignored. The invalid Addr gives the zero Key.
func KeyFromAddr(a netip.Addr) Key {
	if !a.IsValid() {
		return Key{}
	}
	return Key(a.As16())
}

// Decision is the outcome of one Allow call.
type Decision struct {
	Allowed bool
	// Limit is max_requests.
	Limit int
	// Remaining is how many more requests the key may make right now: after
	// an admitted request, max_requests minus the admitted requests in the
	// window including this one; 0 when denied.
	Remaining int
	// RetryAfter is zero when allowed; when denied, the time until the next
	// request from the key would be admitted (the oldest counted request
	// leaves the window).
	RetryAfter time.Duration
	// Reset is the time until every request now counted for the key has
	// left the window, so the full quota is available again (the RateLimit
	// field's "t" parameter).
	Reset time.Duration
}

// Tuning constants; see doc.go.
const (
	bucketCount   = 16 // buckets per window in the bucketed mode
	ringBuckets   = 17 // bucketCount+1 counters: a window can touch 17 buckets
	sweepPerAllow = 2  // slots the clock hand examines on every Allow
	fullProbe     = 64 // slots examined for an expired key when a shard is full
	pageShift     = 8  // slots are allocated in pages of 256
	pageSlots     = 1 << pageShift
	pageMask      = pageSlots - 1
	cycleLimitMS  = 1 << 29 // a hand cycle taking longer is finished at once (~6.2 days)
)

// Limiter is a sharded sliding-window rate limiter. All methods are safe for
// concurrent use.
type Limiter struct {
	enabled  bool
	exact    bool   // max_requests <= ExactLimit: exact per-key log
	limit    uint32 // max_requests
	windowMS int64
	bucketMS int64     // bucketed mode: bucket width, ceil(window/16)
	idleMS   int64     // a shard idle this long holds only expired keys
	stride   int       // uint32 words of state per slot
	shift    uint      // 64 - log2(len(shards))
	seed     [4]uint64 // hash seeds, random per limiter
	start    time.Time
	now      func() time.Time
	shards   []shard

	policyLine []byte // "RateLimit-Policy: ...\r\n"
	policy     string
	maxKeys    int64

	_    [64]byte     // keep the shared counter off the read-only fields' line
	keys atomic.Int64 // tracked keys, all shards; changed only on insert and release
	_    [56]byte
}

type shardState struct {
	mu         sync.Mutex
	last       int64         // latest ms seen; the shard's clock never goes back
	cycleStart int64         // ms when the clock hand last wrapped to slot 0
	idx        index         // key -> slot
	data       [][]uint32    // slab pages: per slot its Key (or, when free, the free-list link), then its state (all zero iff free)
	nslots     uint32        // slots handed out so far (high-water mark)
	free       uint32        // free-list head + 1; 0 when empty
	hand       uint32        // next slot the sweep examines
	live       int32         // keys tracked by this shard
	evicted    atomic.Uint64 // expired keys reclaimed for a new key
	dropped    atomic.Uint64 // live keys dropped for a new key
}

// shard pads shardState to a multiple of 128 bytes so neighbouring mutexes
// do not share a cache line (or an adjacent-line prefetch pair).
type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte
}

// New builds a limiter from cfg (defaults filled in, then validated). now is
// the clock; nil means time.Now. Times are measured from the first now()
// reading, at millisecond resolution.
func New(cfg Config, now func() time.Time) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if now == nil {
		now = time.Now
	}
	l := &Limiter{
		enabled:  cfg.IsEnabled(),
		exact:    cfg.MaxRequests <= ExactLimit,
		limit:    uint32(cfg.MaxRequests),
		windowMS: int64(cfg.WindowSeconds) * 1000,
		shift:    uint(64 - bits.Len(uint(cfg.Shards-1))),
		seed: [4]uint64{
			new(maphash.Hash).Sum64(), new(maphash.Hash).Sum64(),
			new(maphash.Hash).Sum64(), new(maphash.Hash).Sum64(),
		},
		now:    now,
		shards: make([]shard, cfg.Shards),
	}
	l.start = now()
	if l.exact {
		l.stride = keyWords + cfg.MaxRequests
		l.idleMS = l.windowMS
	} else {
		l.bucketMS = (l.windowMS + bucketCount - 1) / bucketCount
		l.stride = keyWords + 1 + ringBuckets
		l.idleMS = l.windowMS + l.bucketMS
	}
	l.maxKeys = int64(cfg.MaxKeys)
	l.policy = `"default";q=` + strconv.Itoa(cfg.MaxRequests) + ";w=" + strconv.Itoa(cfg.WindowSeconds)
	l.policyLine = []byte("RateLimit-Policy: " + l.policy + "\r\n")
	return l, nil
}

// Limit returns max_requests.
func (l *Limiter) Limit() int { return int(l.limit) }

// Window returns the window length.
func (l *Limiter) Window() time.Duration { return time.Duration(l.windowMS) * time.Millisecond }

// Enabled reports whether the limiter limits at all.
func (l *Limiter) Enabled() bool { return l.enabled }

// Keys returns the number of tracked keys (for the pace_ratelimit_keys
// gauge). Expired keys count until the sweep reclaims them.
func (l *Limiter) Keys() int {
	return int(l.keys.Load())
}

// Evicted returns how many expired keys were reclaimed ahead of the regular
// sweep because a new key arrived at a full shard (max_keys reached).
func (l *Limiter) Evicted() uint64 {
	var n uint64
	for i := range l.shards {
		n += l.shards[i].evicted.Load()
	}
	return n
}

// Dropped returns how many live keys were dropped, their counts with
// them, to make room for new keys because max_keys was reached and no
// expired key could be reclaimed quickly.
func (l *Limiter) Dropped() uint64 {
	var n uint64
	for i := range l.shards {
		n += l.shards[i].dropped.Load()
	}
	return n
}

// nowMS reads the clock as milliseconds since the limiter was built.
func (l *Limiter) nowMS() int64 {
	ms := l.now().Sub(l.start).Milliseconds()
	return max(ms, 0)
}

// hash mixes the 16 key bytes with the limiter's seeds; the top bits pick
// the shard, the low 32 bits are the shard index's hash. Two rounds of
// 64x64->128 multiply-and-fold, as wyhash does for 16 bytes: one round
// leaves keys that differ in few bits (consecutive IPv4 addresses, whose
// first 8 bytes are all zero; IPv6 /64 keys, whose last 8 are) on an
// arithmetic progression, which left up to 48 of 64 shards empty for 1,024
// consecutive addresses under some seeds (TestHashSpreadsSequentialKeys).
func (l *Limiter) hash(k *Key) uint64 {
	lo := binary.LittleEndian.Uint64(k[:8])
	hi := binary.LittleEndian.Uint64(k[8:])
	h1, h0 := bits.Mul64(lo^l.seed[0], hi^l.seed[1])
	h1, h0 = bits.Mul64(h0^l.seed[2], h1^l.seed[3])
	return h1 ^ h0
}

// Allow records one request for k at the current time and decides. It does
// not allocate for a key that is already tracked and holds only k's shard
// mutex, for a bounded amount of work.
func (l *Limiter) Allow(k Key) Decision {
	if !l.enabled {
		return Decision{Allowed: true, Limit: int(l.limit), Remaining: int(l.limit)}
	}
	return l.allow(k, l.nowMS())
}

// AllowAt is Allow with the current time supplied by the caller, e.g. an
// event loop that reads the clock once per batch of requests (time.Now is a
// large part of Allow's cost). now must come from the same clock as New's.
func (l *Limiter) AllowAt(k Key, now time.Time) Decision {
	if !l.enabled {
		return Decision{Allowed: true, Limit: int(l.limit), Remaining: int(l.limit)}
	}
	return l.allow(k, max(now.Sub(l.start).Milliseconds(), 0))
}

func (l *Limiter) allow(k Key, now int64) Decision {
	h := l.hash(&k)
	s := &l.shards[h>>l.shift]
	s.mu.Lock()
	d := l.allowLocked(s, &k, uint32(h), now)
	s.mu.Unlock()
	return d
}

func (l *Limiter) allowLocked(s *shard, k *Key, h uint32, now int64) Decision {
	if now < s.last {
		now = s.last
	}
	if s.live > 0 && now-s.last >= l.idleMS {
		l.reset(s, now) // every key in the shard has expired
	}
	s.last = now
	if now-s.cycleStart > cycleLimitMS { // finish a slow hand cycle (see doc.go, "Clock")
		if s.nslots > 0 {
			l.sweep(s, now, int(s.nslots-s.hand))
		} else {
			s.cycleStart = now
		}
	}

	idx, ok := s.idx.find(h, k, s.data, l.stride)
	if !ok {
		idx = l.insert(s, k, h, now)
	}
	var d Decision
	if l.exact {
		d = l.decideExact(s.state(idx, l.stride), now)
	} else {
		d = l.decideBuckets(s.state(idx, l.stride), now)
	}
	l.sweep(s, now, sweepPerAllow)
	return d
}

// insert finds a slot for the new key k. When the shard is full it reclaims
// an expired key if one is among the next fullProbe slots; otherwise it
// drops the live key among them that expires soonest, the one whose
// requests are oldest, as nginx's limit_req drops its least recently used
// entry. Denying new keys instead would let whoever fills the table shut
// every new client out. A shard that holds no key at all (the others hold
// them all) takes the new one over max_keys: admitting it untracked would
// leave its client unlimited for as long as the table stays full. That
// happens only to an empty shard, so the count exceeds max_keys by at most
// one per shard. It returns the new key's slot.
func (l *Limiter) insert(s *shard, k *Key, h uint32, now int64) uint32 {
	if l.keys.Add(1) > l.maxKeys {
		l.keys.Add(-1)
		freed := l.sweep(s, now, fullProbe)
		s.evicted.Add(uint64(freed))
		if freed == 0 || l.keys.Add(1) > l.maxKeys { // another shard may have taken the room
			if freed > 0 {
				l.keys.Add(-1)
			}
			if l.dropSoonest(s, now) {
				s.dropped.Add(1)
				// The new key takes the dropped key's place in the count.
			} else {
				l.keys.Add(1) // an empty shard: over max_keys, see above
			}
		}
	}
	var idx uint32
	if s.free != 0 {
		idx = s.free - 1
		link := s.key(idx, l.stride)
		s.free = binary.LittleEndian.Uint32(link[:4])
	} else {
		idx = s.nslots
		if idx&pageMask == 0 {
			s.data = append(s.data, make([]uint32, pageSlots*l.stride))
		}
		s.nslots++
	}
	*s.key(idx, l.stride) = *k
	s.idx.insert(h, idx)
	s.live++
	return idx
}

// dropSoonest releases the key, among the fullProbe slots before the hand,
// that expires soonest, leaving the key count to the key that takes its
// place. If none of them holds a key it releases the first one further
// back (a sparse shard: up to a scan of its slots). It returns false only
// when the shard holds no key.
func (l *Limiter) dropSoonest(s *shard, now int64) bool {
	if s.live == 0 {
		return false
	}
	best, bestAt, found := uint32(0), int64(0), false
	for j, i := 0, s.hand; j < int(s.nslots) && (j < fullProbe || !found); j++ {
		if i == 0 {
			i = s.nslots
		}
		i--
		if at, used := l.expiresAt(s.state(i, l.stride), now); used && (!found || at < bestAt) {
			best, bestAt, found = i, at, true
		}
	}
	if found {
		l.release(s, best)
	}
	return found
}

// release frees slot i, whose key leaves the index; the caller adjusts
// l.keys.
func (l *Limiter) release(s *shard, i uint32) {
	k := s.key(i, l.stride)
	s.idx.remove(uint32(l.hash(k)), i)
	clear(s.state(i, l.stride))
	*k = Key{}
	binary.LittleEndian.PutUint32(k[:4], s.free)
	s.free = i + 1
	s.live--
}

// keyWords is the uint32 words a slot's Key takes, before its state.
const keyWords = 4

// state returns slot idx's state words.
func (s *shard) state(idx uint32, stride int) []uint32 {
	p := s.data[idx>>pageShift]
	o := int(idx&pageMask) * stride
	return p[o+keyWords : o+stride : o+stride]
}

// key returns slot idx's Key, which shares the slot's cache line(s) with
// its state.
func (s *shard) key(idx uint32, stride int) *Key { return slotKey(s.data, idx, stride) }

func slotKey(data [][]uint32, idx uint32, stride int) *Key {
	p := data[idx>>pageShift]
	o := int(idx&pageMask) * stride
	return (*Key)(unsafe.Pointer(&p[o : o+keyWords][0]))
}

// sweep advances the clock hand by up to n slots, releasing slots whose keys
// have expired, and returns how many it released.
func (l *Limiter) sweep(s *shard, now int64, n int) int {
	freed := 0
	for ; n > 0 && s.nslots > 0; n-- {
		i := s.hand
		s.hand++
		if s.hand >= s.nslots {
			s.hand = 0
			s.cycleStart = now
		}
		if at, used := l.expiresAt(s.state(i, l.stride), now); used && at <= now {
			l.release(s, i)
			l.keys.Add(-1)
			freed++
		}
	}
	return freed
}

// reset drops every key of a shard whose keys have all expired, releasing
// its memory.
func (l *Limiter) reset(s *shard, now int64) {
	l.keys.Add(-int64(s.live))
	s.live = 0
	s.idx = index{}
	s.data = nil
	s.nslots, s.free, s.hand = 0, 0, 0
	s.cycleStart = now
}

// Sweep examines up to n slots in every shard (each under its own lock,
// never all at once) and releases expired keys; it returns how many it
// released. A shard left with no keys gives its map and slab back to the
// garbage collector. Allow already sweeps incrementally (and never shrinks a
// shard, except the idle reset); Sweep lets a quiet proxy reclaim keys and
// memory sooner, e.g. from a ticker calling Sweep(1024) every second.
func (l *Limiter) Sweep(n int) int {
	freed := 0
	for i := range l.shards {
		s := &l.shards[i]
		now := l.nowMS()
		s.mu.Lock()
		now = max(now, s.last) // s.last stays the newest stored time (idle rule)
		freed += l.sweep(s, now, n)
		if s.live == 0 && s.nslots > 0 {
			l.reset(s, now) // empty: give the map and slab back
		}
		s.mu.Unlock()
	}
	return freed
}

// stamp encodes ms as a nonzero uint32 timestamp (0 marks an empty entry):
// ms+1 modulo 2^32, with 0 bumped to 1, which makes that one request count
// 1 ms longer, never shorter.
func stamp(ms int64) uint32 {
	t := uint32(ms + 1)
	if t == 0 {
		t = 1
	}
	return t
}

// expiresAt returns when the key in slot state st stops counting (ms), and
// whether the slot is in use at all.
func (l *Limiter) expiresAt(st []uint32, now int64) (at int64, used bool) {
	if l.exact {
		nowT := stamp(now)
		newest, used := uint32(1<<32-1), false
		for _, t := range st {
			if t != 0 {
				used = true
				newest = min(newest, nowT-t) // smallest age
			}
		}
		return now - int64(newest) + l.windowMS, used
	}
	if st[0] == 0 {
		return 0, false
	}
	last := lastBucket(st[0], now/l.bucketMS)
	return (last+1)*l.bucketMS + l.windowMS, true
}

// decideExact applies the exact rule to a log of max_requests timestamps: a
// timestamp counts while its age is < window.
func (l *Limiter) decideExact(st []uint32, now int64) Decision {
	nowT := stamp(now)
	w := uint32(l.windowMS)
	live, slot := uint32(0), -1
	oldest, newest := uint32(0), w // largest and smallest live age
	for i, t := range st {
		age := nowT - t
		if t == 0 || age >= w {
			st[i] = 0 // drop it, so it cannot come back to life when ages wrap (2^32 ms)
			if slot < 0 {
				slot = i
			}
			continue
		}
		live++
		oldest = max(oldest, age)
		newest = min(newest, age)
	}
	if live < l.limit {
		st[slot] = nowT
		return Decision{
			Allowed:   true,
			Limit:     int(l.limit),
			Remaining: int(l.limit - live - 1),
			Reset:     time.Duration(w) * time.Millisecond,
		}
	}
	return Decision{
		Limit:      int(l.limit),
		RetryAfter: time.Duration(w-oldest) * time.Millisecond,
		Reset:      time.Duration(w-newest) * time.Millisecond,
	}
}

// Bucketed-mode st[0]: bucketInUse | newest bucket number mod 2^31.
const (
	bucketInUse = 1 << 31
	bucketMask  = bucketInUse - 1
)

// lastBucket decodes st[0] into the full bucket number, given the current
// bucket cur >= it (the gap is far below 2^31 buckets; see doc.go, "Clock").
func lastBucket(st0 uint32, cur int64) int64 {
	return cur - int64((uint32(cur)-st0)&bucketMask)
}

// decideBuckets applies the bucketed rule: st[0] is described above, st[1:] are ringBuckets counters indexed by bucket
// number mod ringBuckets. A bucket counts while its end + window > now.
func (l *Limiter) decideBuckets(st []uint32, now int64) Decision {
	bw, w := l.bucketMS, l.windowMS
	cur := now / bw
	ring := st[1:]
	if st[0] != 0 {
		last := lastBucket(st[0], cur)
		if cur-last >= ringBuckets {
			clear(ring)
		} else {
			for b := last + 1; b <= cur; b++ {
				ring[b%ringBuckets] = 0
			}
		}
	}
	st[0] = bucketInUse | uint32(cur)&bucketMask
	// Buckets cur-16..cur; count those still inside the window.
	live := uint32(0)
	first := max(cur-ringBuckets+1, 0)
	for b := first; b <= cur; b++ {
		if (b+1)*bw+w <= now {
			ring[b%ringBuckets] = 0
			first = b + 1
			continue
		}
		live += ring[b%ringBuckets]
	}
	if live < l.limit {
		ring[cur%ringBuckets]++
		return Decision{
			Allowed:   true,
			Limit:     int(l.limit),
			Remaining: int(l.limit - live - 1),
			Reset:     time.Duration((cur+1)*bw+w-now) * time.Millisecond,
		}
	}
	d := Decision{Limit: int(l.limit)}
	excess, gone := live-l.limit+1, uint32(0)
	for b := first; b <= cur; b++ {
		gone += ring[b%ringBuckets]
		if gone >= excess && d.RetryAfter == 0 {
			d.RetryAfter = time.Duration((b+1)*bw+w-now) * time.Millisecond
		}
		if ring[b%ringBuckets] != 0 {
			d.Reset = time.Duration((b+1)*bw+w-now) * time.Millisecond
		}
	}
	return d
}
