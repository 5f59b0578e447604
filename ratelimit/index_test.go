package ratelimit

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The index agrees with a map under random inserts and removes, including
// colliding hashes (few distinct hash values force long probe runs).
func TestIndexMatchesMap(t *testing.T) {
	for _, hashes := range []uint32{1<<32 - 1, 64, 3} {
		rng := rand.New(rand.NewPCG(5, uint64(hashes)))
		const slots = 2048
		const stride = keyWords + 1
		data := make([][]uint32, slots/pageSlots)
		for p := range data {
			data[p] = make([]uint32, pageSlots*stride)
		}
		hashOf := make([]uint32, slots)
		for s := range hashOf {
			*slotKey(data, uint32(s), stride) = Key{byte(s), byte(s >> 8), 1}
			hashOf[s] = rng.Uint32() % hashes
		}
		var x index
		in := map[uint32]bool{}
		for i := 0; i < 50000; i++ {
			s := uint32(rng.IntN(slots))
			k := *slotKey(data, s, stride)
			got, ok := x.find(hashOf[s], &k, data, stride)
			if ok != in[s] || ok && got != s {
				t.Fatalf("hashes=%d op %d: find(slot %d) = %d, %v, want %v", hashes, i, s, got, ok, in[s])
			}
			if ok {
				x.remove(hashOf[s], s)
				delete(in, s)
			} else if rng.IntN(3) > 0 {
				x.insert(hashOf[s], s)
				in[s] = true
			}
			if x.n != len(in) {
				t.Fatalf("hashes=%d op %d: n = %d, want %d", hashes, i, x.n, len(in))
			}
		}
	}
}

// Keys that differ in few bits must still spread over the shards and over
// each shard's index: consecutive IPv4 addresses (the first 8 key bytes all
// zero), consecutive IPv6 /64s (the last 8 zero). 16 keys per shard on
// average, for 200 limiters (fresh seeds each). By chance an empty shard
// comes up about once in 100 such runs, a shard over 44 keys far less
// often; a one-round multiply left up to 48 of 64 shards empty.
func TestHashSpreadsSequentialKeys(t *testing.T) {
	const shards, perShard = 64, 16
	families := []struct {
		name string
		key  func(i int) Key
	}{
		{"IPv4 10.7.x.y", func(i int) Key { return KeyFromAddr(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)})) }},
		{"IPv6 2001:db8:0:x::/64", func(i int) Key {
			var a [16]byte
			a[0], a[1], a[2], a[3], a[6], a[7] = 0x20, 0x01, 0x0d, 0xb8, byte(i>>8), byte(i)
			return KeyFromAddr(netip.AddrFrom16(a))
		}},
	}
	for _, f := range families {
		empties, worstFull, worstProbe := 0, 0, 0
		for rep := 0; rep < 200; rep++ {
			l, _ := newTest(t, Config{Shards: shards})
			count := make([]int, shards)
			idx := make([]index, shards)
			for i := 0; i < shards*perShard; i++ {
				k := f.key(i)
				h := l.hash(&k)
				s := h >> l.shift
				count[s]++
				// Linear probing distance this key would travel in its
				// shard's index.
				x := &idx[s]
				x.insert(uint32(h), uint32(i))
				mask := uint32(len(x.t) - 1)
				d := 0
				for j := uint32(h) & mask; uint32(x.t[j]) != uint32(i)+1; j = (j + 1) & mask {
					d++
				}
				worstProbe = max(worstProbe, d)
			}
			empty, full := 0, 0
			for _, c := range count {
				if c == 0 {
					empty++
				}
				full = max(full, c)
			}
			empties, worstFull = empties+empty, max(worstFull, full)
		}
		if empties > 2 || worstFull > 44 || worstProbe > 48 {
			t.Errorf("%s, %d keys over %d shards, 200 seeds: %d empty shards in all (want <= 2), fullest shard %d (want <= 44), longest index probe %d (want <= 48)",
				f.name, shards*perShard, shards, empties, worstFull, worstProbe)
		}
	}
}
