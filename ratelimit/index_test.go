package ratelimit

import (
	"math/rand/v2"
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
