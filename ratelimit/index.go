package ratelimit

// index is a shard's open-addressing hash table from Key to slab slot: linear
// probing over uint64 entries holding the key's 32-bit hash (high half) and
// slot+1 (low half; 0 marks an empty entry). Keys themselves live in the
// slab slots, so an entry costs 8 bytes and growing the table never touches the
// slab: it rehashes from the stored hashes, a sequential pass bounded by the
// shard's size. Deletion shifts entries back, so there are no tombstones.
// It replaces map[Key]uint32, which cost about 45 bytes per key.
type index struct {
	t []uint64
	n int // entries in use
}

const minIndex = 16

// find returns the slot of k (hash h) and true, or false when k is absent.
func (x *index) find(h uint32, k *Key, data [][]uint32, stride int) (slot uint32, ok bool) {
	if len(x.t) == 0 {
		return 0, false
	}
	mask := uint32(len(x.t) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := x.t[i]
		if e == 0 {
			return 0, false
		}
		if uint32(e>>32) == h {
			s := uint32(e) - 1
			if *slotKey(data, s, stride) == *k {
				return s, true
			}
		}
	}
}

// insert adds slot for a key with hash h that is not present.
func (x *index) insert(h, slot uint32) {
	if (x.n+1)*4 > len(x.t)*3 {
		x.grow()
	}
	x.put(uint64(h)<<32 | uint64(slot+1))
	x.n++
}

func (x *index) put(e uint64) {
	mask := uint32(len(x.t) - 1)
	i := uint32(e>>32) & mask
	for x.t[i] != 0 {
		i = (i + 1) & mask
	}
	x.t[i] = e
}

func (x *index) grow() {
	old := x.t
	x.t = make([]uint64, max(2*len(old), minIndex))
	for _, e := range old {
		if e != 0 {
			x.put(e)
		}
	}
}

// remove deletes the entry for slot (hash h), which must be present.
func (x *index) remove(h, slot uint32) {
	mask := uint32(len(x.t) - 1)
	want := uint64(h)<<32 | uint64(slot+1)
	i := h & mask
	for x.t[i] != want {
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move later entries of the probe run into the
	// hole unless their home position lies cyclically in (hole, j].
	for j := i; ; {
		j = (j + 1) & mask
		e := x.t[j]
		if e == 0 {
			break
		}
		home := uint32(e>>32) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.t[i] = e
			i = j
		}
	}
	x.t[i] = 0
	x.n--
}
