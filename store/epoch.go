package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var metaEpoch = []byte("boot_epoch")

// NextEpoch starts a new boot epoch for this node and returns it: max(the
// stored epoch + 1, nowMS), persisted (fsynced) before it returns, so it is
// strictly greater than every epoch this data dir used before, even when
// the wall clock went back. Peers use it to tell a restarted node from a
// replayed message, and a copied data dir from its original (DESIGN §3-4).
// Call it once per start, before the first frame is sent.
func (s *Store) NextEpoch(nowMS uint64) (uint64, error) {
	var epoch uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		var prev uint64
		if b := meta.Get(metaEpoch); len(b) == 8 {
			prev = binary.BigEndian.Uint64(b)
		}
		epoch = max(prev+1, nowMS)
		return meta.Put(metaEpoch, u64(epoch))
	})
	if err != nil {
		return 0, fmt.Errorf("store: boot epoch: %w", s.commitError(err, 1))
	}
	return epoch, nil
}
