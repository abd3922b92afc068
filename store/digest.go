package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// The digest tree (docs/PROTOCOL.md, Anti-entropy): 2^16 leaves by the first 16 bits of
// SHA-256(key), under 256 top nodes by the first 8. A leaf is the XOR of its
// records' hashes (tombstones included: they must converge too), a top node
// the XOR of its leaves, the root SHA-256 of the 256 top nodes. XOR makes an
// update O(1): a changed record XORs its old hash out and its new one in.
// The tree is about 1 MiB whatever the number of keys.
type digest struct {
	leaves [1 << 16]Hash
	tops   [256]Hash
	root   [32]byte
}

// KeyHash is the first 128 bits of SHA-256(key): what anti-entropy names a
// key by. Its first 16 bits are the key's leaf, the first 8 its top node.
func KeyHash(key string) Hash {
	sum := sha256.Sum256([]byte(key))
	var h Hash
	copy(h[:], sum[:])
	return h
}

// Leaf returns the leaf of the digest tree a key hash falls in.
func (h Hash) Leaf() uint16 { return binary.BigEndian.Uint16(h[:2]) }

// update replaces a record's hash in its leaf: was is zero for a new
// record, now zero for a removed one.
func (d *digest) update(kh Hash, was, now Hash) {
	var delta Hash
	delta.xor(was)
	delta.xor(now)
	leaf := kh.Leaf()
	d.leaves[leaf].xor(delta)
	d.tops[leaf>>8].xor(delta)
}

func (d *digest) computeRoot() {
	h := sha256.New()
	for i := range d.tops {
		h.Write(d.tops[i][:])
	}
	h.Sum(d.root[:0])
}

// Root returns the root of the digest tree: equal on two nodes that hold
// the same records.
func (s *Store) Root() [32]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dig.root
}

// TopDigests returns the 256 top nodes of the digest tree.
func (s *Store) TopDigests() [256]Hash {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dig.tops
}

// LeafDigests returns the 256 leaves under top node top.
func (s *Store) LeafDigests(top uint8) [256]Hash {
	var out [256]Hash
	s.mu.RLock()
	defer s.mu.RUnlock()
	copy(out[:], s.dig.leaves[int(top)<<8:])
	return out
}
