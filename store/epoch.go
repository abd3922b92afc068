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
// replayed message, and a copied data dir from its original (docs/PROTOCOL.md, Data model).
// Call it once per start, before the first frame is sent.
//
// On a full disk, where even the space reserve gives no room for the
// transaction, the epoch is returned without being persisted (and a
// warning logged), so that the node still starts and serves reads
// (docs/ARCHITECTURE.md, "A full disk"): it still exceeds every earlier
// epoch unless the wall clock went back.
func (s *Store) NextEpoch(nowMS uint64) (uint64, error) {
	var epoch uint64
	update := func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			var prev uint64
			if b := meta.Get(metaEpoch); len(b) == 8 {
				prev = binary.BigEndian.Uint64(b)
			}
			epoch = max(prev+1, nowMS)
			return meta.Put(metaEpoch, u64(epoch))
		})
	}
	err := update()
	if isNoSpace(err) && s.space.release() {
		err = update()
	}
	if isNoSpace(err) && epoch != 0 {
		s.log.Warn("disk full: the boot epoch is not persisted", "epoch", epoch, "error", err)
		s.epoch.Store(epoch)
		return epoch, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boot epoch: %w", s.commitError(err, 1))
	}
	s.epoch.Store(epoch)
	return epoch, nil
}
