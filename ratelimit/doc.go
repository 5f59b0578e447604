// Package ratelimit is pace's per-client request limiter: a sharded,
// lock-striped sliding-window limiter ([Limiter]), the extraction of a
// client key from a request ([Extractor]), and the RateLimit response fields.
//
// # Rule
//
// With max_requests N and window W, a request from key k at time now is
// admitted when fewer than N requests from k were admitted in the trailing
// window (now-W, now]. The window is half-open: a request admitted exactly W
// ago no longer counts. Denied requests are not recorded. With the default
// 10 per 60 s, ten requests at t=0 are admitted, requests during (0, 60) s are
// denied, and at t=60 s exactly the first ten have left the window, so the
// next one is admitted. There is no fixed-window burst: in any interval of
// length W at most N requests are admitted.
//
// Times are milliseconds since the Limiter was built, read from the clock
// given to [New] (time.Now by default, which is monotonic). Each shard
// never lets its clock go backwards: a reading older than the last one seen
// by that shard is treated as the last one.
//
// # State per key
//
// For N <= [ExactLimit] (64) the rule is exact: each key owns a log of N
// uint32 timestamps (0 = empty) in a per-shard slab, allocated in pages of
// 256 slots, beside its Key (kept for lookups and for deletion by the
// sweep). A shard finds a key's slot through its own open-addressing table of
// 8-byte entries (32-bit hash, slot number), which holds no pointers and
// rehashes from the stored hashes when it grows at 3/4 load. A decision scans
// the N entries (one or two cache lines for small N). A 10/60 s key costs 16
// bytes of Key + 40 bytes of timestamps + 8 to 21 bytes of table: 73 bytes on
// average at 1,000,000 keys (TestMemoryPerKey measures it and fails above 100).

// For N > 64 the state is O(1) per key: 17 uint32 counters of a ring of
// buckets of width B = ceil(W/16), plus the newest bucket number. A request in
// bucket b counts until the end of b plus W, that is for W + at most B. So
// this mode never admits more than N in any trailing window, like the exact
// mode, but may deny a request that the exact rule would admit: a counted
// request is held for up to W/16 (6.25%) longer than exact. Retry-After and
// the reset time report that conservative schedule.
//
// # Sweeping and max_keys
//
// Every Allow advances its shard's clock hand over 2 slots and releases
// those whose keys have expired, so keys are reclaimed incrementally and no
// request ever waits for a full scan. [Limiter.Sweep] lets a ticker
// reclaim faster when traffic is low. A shard that has seen no request for
// W (W + B in bucketed mode) holds only expired keys and is dropped whole,
// giving its memory back, on its next request.
//
// max_keys caps the tracked keys of all shards together (one shared atomic
// counter, touched only when a key is inserted or released). A new key
// arriving when the cap is reached makes its shard's hand examine up to 64
// more slots; expired keys found there are reclaimed ([Limiter.Evicted]
// counts them) and the new key takes a freed place. If none has expired,
// the key among those 64 that expires soonest (the one whose counted
// requests are oldest) is dropped and the new key takes its place
// ([Limiter.Dropped] counts them; in a sparse shard whose 64 slots are all
// free, the first key further back). A shard holding no key at all takes
// the new one over the cap, so the count may exceed max_keys by at most one
// per shard; admitted untracked, that client would go unlimited for as
// long as the table stays full. This is as nginx's limit_req drops its least
// recently used entry and HAProxy's stick tables their oldest. Denying the
// new key instead would let whoever fills the table (an IPv6 client
// rotating addresses, or a header key) shut every new client out for a
// window. A dropped key starts again with a full quota, which gains a
// client rotating keys nothing it did not already have from its new keys.
// Keys already tracked are unaffected.
//
// # Clock
//
// Timestamps are uint32 milliseconds, compared modulo 2^32 (49.7 days);
// bucket numbers modulo 2^31. The window is at most one week, and a shard
// whose hand has not completed a cycle within 2^29 ms (6.2 days) completes it
// on its next request (bounded by that shard's share of max_keys, and only
// ever needed by shards whose traffic is too sparse for the hand to get
// round), so no stored time is ever older than 2^31 ms when read.
//
// # Keys
//
// A [Key] is 16 bytes: IPv4 addresses (and IPv4-mapped IPv6 peers) as
// ::ffff:a.b.c.d, IPv6 addresses cut to their first ipv6_prefix bits
// (default 64, the least a subscriber is given; 128 keys each address
// apart), and header values as a 128-bit hash seeded per process (so
// nobody can precompute collisions).
//
// The client address is the TCP peer unless the peer is in trusted_proxies;
// then it is the rightmost X-Forwarded-For element that is not itself a
// trusted proxy, or X-Real-IP when X-Forwarded-For is absent (see
// [Extractor.ClientIP]). Headers from untrusted peers are ignored, so a
// client cannot choose its own key by sending them. The RFC 7239 Forwarded
// field is not read. Addresses are parsed from []byte by a small parser
// that accepts what net/netip accepts (zones excluded) without allocating.
//
// # Response fields
//
// [Limiter.AppendHeaders] writes RateLimit-Policy and RateLimit in the syntax
// of draft-ietf-httpapi-ratelimit-headers-10 (the Structured Fields syntax
// introduced in -08), plus Retry-After (RFC 9110 section 10.2.3) on denials:
//
//	RateLimit-Policy: "default";q=10;w=60
//	RateLimit: "default";r=0;t=42
//	Retry-After: 7
//
// # Concurrency
//
// A Limiter is used by every event loop at once. Keys are spread over a
// power-of-two number of shards (default: the smallest power of two >=
// 16*GOMAXPROCS) by a seeded two-round multiply-mix of the 16 key bytes (so
// that consecutive addresses spread too); each shard has
// its own sync.Mutex, table and slab, padded to its own cache lines. Allow
// holds one shard mutex for a bounded amount of work (N or 17 words, plus
// 2 swept slots, 64 more when the table is full) and does not allocate for
// a tracked key; inserting a key may add a slab page or double the shard's
// table (a sequential rehash of at most that shard's entries), and, when
// the table is full and the 64 slots are all free (a sparse shard), scan
// further back, up to all the shard's slots, for a key to drop.
// Keys, Evicted and Dropped read per-shard atomics without locking. An
// Extractor is immutable and needs no locking.
package ratelimit
