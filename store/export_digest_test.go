package store

import (
	bolt "go.etcd.io/bbolt"
)

// FromSnapshot reports whether Open loaded the digest from the file's
// snapshot rather than rebuilding it.
func (s *Store) FromSnapshot() bool { return s.fromSnapshot }

// EditSnapshot rewrites the digest snapshot of the closed store file at
// path: edit gets the stored value (nil: none) and returns the new one
// (nil: delete). With restamp, the value's transaction stamp is set to the
// editing transaction's and its checksum recomputed, so that it stays
// current: a forged snapshot Open would trust.
func EditSnapshot(path string, restamp bool, edit func([]byte) []byte) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDigest)
		if err != nil {
			return err
		}
		key := digestSparse
		if b.Get(key) == nil {
			key = digestSnapshot
		}
		v := edit(append([]byte(nil), b.Get(key)...))
		if v == nil {
			return b.Delete(key)
		}
		if restamp {
			d := new(digest)
			m, _ := decodeSnapshotUnchecked(v, d)
			m.txid = uint64(tx.ID())
			key, v = encodeSnapshot(d, m)
		}
		return b.Put(key, v)
	})
}

// decodeSnapshotUnchecked decodes a snapshot whatever its checksum (a
// test's forgery).
func decodeSnapshotUnchecked(b []byte, d *digest) (digestSnap, bool) {
	if len(b) < snapHeader+len(checksum(nil)) {
		return digestSnap{}, false
	}
	return decodeBody(b[:len(b)-len(checksum(nil))], d)
}
