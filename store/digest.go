package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"
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
// the same records. It is zero while the store is Counting: no tree is
// known yet (counting.go).
func (s *Store) Root() [32]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.count != nil {
		return [32]byte{}
	}
	return s.dig.root
}

// TopDigests returns the 256 top nodes of the digest tree (zeros while
// Counting).
func (s *Store) TopDigests() [256]Hash {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.count != nil {
		return [256]Hash{}
	}
	return s.dig.tops
}

// LeafDigests returns the 256 leaves under top node top (zeros while
// Counting).
func (s *Store) LeafDigests(top uint8) [256]Hash {
	var out [256]Hash
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.count == nil {
		copy(out[:], s.dig.leaves[int(top)<<8:])
	}
	return out
}

// The digest snapshot (docs/ARCHITECTURE.md, "The digest at restart"):
// Close writes the digest tree, the live key count, the largest lamport
// and the number of records with a TTL into bucket digest, in the last
// transaction it commits, stamped with that transaction's id. bbolt
// numbers every write transaction, so the snapshot describes the file
// exactly when the file's transaction id is still the stamp: Open then
// loads it instead of reading every record. Any later write (a crash after
// the next Open, an upgrade, a double-fault replay) leaves it stale, and
// Open counts as after a crash. A checksum covers it against a torn or
// damaged value; Check compares a current snapshot with a rebuild.
//
// A store whose leaves are mostly zero (a small one) writes them sparse,
// under another key, so that its Close writes about 18 bytes a key rather
// than 1 MiB; a larger one writes every leaf, as the first format did
// (which older code still reads). Close writes one and deletes the other.
var (
	bucketDigest   = []byte("digest")
	digestSnapshot = []byte("snapshot") // every leaf (snapVersion)
	digestSparse   = []byte("sparse")   // the leaves that are not zero (snapSparse)
)

const (
	snapVersion = 1
	// version (1) ‖ txid (8) ‖ keys (8) ‖ max lamport (8) ‖ TTL records (8)
	// ‖ leaves (2^16 × 16) ‖ SHA-256 of all before (32)
	snapHeader = 1 + 4*8
	snapSize   = snapHeader + len(digest{}.leaves)*len(Hash{}) + sha256.Size
	// snapSparse: the same header, then (leaf (2, big endian) ‖ digest
	// (16)) for every leaf that is not zero, in increasing order, then
	// the SHA-256 of all before.
	snapSparse    = 2
	sparseEntry   = 2 + len(Hash{})
	sparseMaxSize = snapSize // beyond it, every leaf is smaller
)

// digestSnap is what a snapshot holds beside the tree.
type digestSnap struct {
	txid, keys, maxL, ttlKeys uint64
}

// encodeSnapshot encodes d with m, and returns the key it goes under:
// sparse when that is smaller.
func encodeSnapshot(d *digest, m digestSnap) (key, val []byte) {
	nonZero := 0
	for i := range d.leaves {
		if d.leaves[i] != (Hash{}) {
			nonZero++
		}
	}
	sparse := snapHeader+nonZero*sparseEntry+sha256.Size < sparseMaxSize
	b := make([]byte, 0, min(snapSize, snapHeader+nonZero*sparseEntry+sha256.Size))
	key = digestSnapshot
	if sparse {
		b, key = append(b, snapSparse), digestSparse
	} else {
		b = append(b, snapVersion)
	}
	for _, v := range []uint64{m.txid, m.keys, m.maxL, m.ttlKeys} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	for i := range d.leaves {
		switch {
		case !sparse:
			b = append(b, d.leaves[i][:]...)
		case d.leaves[i] != (Hash{}):
			b = binary.BigEndian.AppendUint16(b, uint16(i))
			b = append(b, d.leaves[i][:]...)
		}
	}
	return key, append(b, checksum(b)...)
}

// decodeSnapshot decodes a snapshot, of either form, into d (leaves,
// tops and root) and returns its header; ok is false for a value that is
// not a whole, intact snapshot.
func decodeSnapshot(b []byte, d *digest) (m digestSnap, ok bool) {
	if len(b) < snapHeader+sha256.Size {
		return m, false
	}
	body := b[:len(b)-sha256.Size]
	if string(checksum(body)) != string(b[len(body):]) {
		return m, false
	}
	return decodeBody(body, d)
}

// decodeBody decodes a snapshot without its checksum.
func decodeBody(body []byte, d *digest) (m digestSnap, ok bool) {
	leaves := body[snapHeader:]
	switch {
	case body[0] == snapVersion && len(leaves) == len(d.leaves)*len(Hash{}):
	case body[0] == snapSparse && len(leaves)%sparseEntry == 0:
	default:
		return m, false
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(body[1+8*i:]) }
	m = digestSnap{txid: u(0), keys: u(1), maxL: u(2), ttlKeys: u(3)}
	*d = digest{}
	if body[0] == snapVersion {
		for i := range d.leaves {
			copy(d.leaves[i][:], leaves[i*len(Hash{}):])
		}
	} else {
		next := 0 // leaves in increasing order: one encoding per tree
		for ; len(leaves) > 0; leaves = leaves[sparseEntry:] {
			i := int(binary.BigEndian.Uint16(leaves))
			if i < next {
				return m, false
			}
			copy(d.leaves[i][:], leaves[2:sparseEntry])
			next = i + 1
		}
	}
	for i := range d.leaves {
		d.tops[i>>8].xor(d.leaves[i])
	}
	d.computeRoot()
	return m, true
}

// readSnapshot returns the file's digest snapshot decoded into d, if there
// is one and it is current: stamped with tx's id (no write since).
// damaged reports a snapshot that is current by its stamp's place but
// does not decode (Check reports it; Open just rebuilds).
func readSnapshot(tx *bolt.Tx, d *digest) (m digestSnap, ok, damaged bool) {
	b := tx.Bucket(bucketDigest)
	if b == nil {
		return m, false, false
	}
	v := b.Get(digestSparse)
	if v == nil {
		v = b.Get(digestSnapshot)
	}
	if v == nil {
		return m, false, false
	}
	m, ok = decodeSnapshot(v, d)
	if !ok {
		return m, false, true
	}
	return m, m.txid == uint64(tx.ID()), false
}

// writeSnapshot writes the in-memory digest as the file's snapshot, in a
// transaction of its own that must be the file's last (Close, once
// everything is flushed and nothing can commit).
func (s *Store) writeSnapshot() error {
	s.mu.RLock()
	d := *s.dig
	m := digestSnap{keys: s.keys, maxL: s.lamport.Load()}
	s.mu.RUnlock()
	m.ttlKeys = uint64(s.TTLKeys())
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDigest)
		if err != nil {
			return err
		}
		m.txid = uint64(tx.ID())
		key, val := encodeSnapshot(&d, m)
		other := digestSnapshot
		if string(key) == string(other) {
			other = digestSparse
		}
		return errors.Join(b.Put(key, val), b.Delete(other))
	})
}

// loadSnapshot loads a current snapshot into s at Open, with the records
// that have a TTL (read through bucket ttl: after a clean close it lists
// exactly them). It returns false, having changed nothing, when there is
// none or it does not hold together; Open then rebuilds.
func (s *Store) loadSnapshot(tx *bolt.Tx, lives map[string]ttlHead) (maxL uint64, ok bool, err error) {
	d := new(digest)
	m, ok, _ := readSnapshot(tx, d)
	if !ok {
		return 0, false, nil
	}
	found := map[string]ttlHead{}
	n, err := ttlRecords(tx, found)
	if err != nil || n != m.ttlKeys {
		return 0, false, err
	}
	maps.Copy(lives, found)
	*s.dig = *d
	s.keys = m.keys
	return m.maxL, true, nil
}

// ttlRecords adds to lives the records with a TTL that bucket ttl names
// (after a clean close, exactly the records with a TTL; after a crash,
// those whose deadline was persisted, and maybe stale ones restoreLives
// drops) and returns how many it added.
func ttlRecords(tx *bolt.Tx, lives map[string]ttlHead) (uint64, error) {
	kv := tx.Bucket(bucketKV)
	n := uint64(0)
	err := tx.Bucket(bucketTTL).ForEach(func(k, v []byte) error {
		raw := kv.Get(k)
		if raw == nil {
			return nil
		}
		h, err := decodeHead(raw)
		if err != nil {
			return fmt.Errorf("%w: record %q: %v", ErrCorrupt, k, err)
		}
		if h.TTL > 0 && !h.Deleted {
			n++
		}
		noteLife(lives, string(k), hashBytes(raw), h)
		return nil
	})
	return n, err
}

func checksum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}
