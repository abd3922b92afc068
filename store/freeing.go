package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Freeing space on a full disk (docs/ARCHITECTURE.md, "A full disk").
//
// A flush needs new pages even for deletes: bbolt copies every page it
// changes, and the pages a transaction frees are reused only by later
// transactions. It copies a whole leaf, and a leaf holds up to four
// records however large they are (bbolt never splits a node of four or
// fewer), so one 24 KiB write can copy three 24 KiB neighbours: a flush
// can need several times the bytes the log held. The writes admitted
// while the reserve was held can therefore fail to flush even with the
// reserve released, and every batch logged after them (the deletes meant
// to free space) would wait behind them for ever: a flush writes the
// batches in order.
//
// So when a flush fails for lack of space, the records that free space
// (tombstones, and overwrites not larger than the record in the file) are
// written first, alone, in their latest pending version: records only,
// without change-log events and without moving wal_lsn, so the file is
// still the state after its last flushed batch as far as the log and
// replay are concerned (replay finds these records again in the log, with
// the same bytes). Reads do not notice: they look at the pending sets
// first. The pages these transactions free then take the full flush.
// A group that fails is split in halves, since one delete can share its
// leaf with large records that stay (its transaction copies them) while
// its neighbours' deletes shrink that leaf; the last eighth of the reserve
// is given to these transactions only (space.releaseKept).

// freeingTries bounds the transactions one flushFreeing makes: on a disk
// where nothing fits, each fails after writing what it could, and the
// flusher retries later anyway.
const freeingTries = 64

// flushFreeing writes the pending records that free space into the file,
// ahead of their batches, and reports whether it wrote any. The caller
// holds the flusher's lock.
func (s *Store) flushFreeing() bool {
	recs := s.pend.Latest()
	tries := freeingTries
	wrote := false
	for {
		n := s.writeFreeing(recs, &tries)
		if n == 0 {
			return wrote
		}
		wrote = true // the pages freed may let a group that failed fit now
	}
}

// writeFreeing writes the records of recs that free space in one
// transaction, or, when that fails for lack of space, in halves; it
// returns how many it wrote.
func (s *Store) writeFreeing(recs []*pendingRec, tries *int) int {
	if len(recs) == 0 || *tries <= 0 {
		return 0
	}
	*tries--
	var n int
	update := func() error {
		n = 0
		return s.db.Update(func(tx *bolt.Tx) (err error) {
			n, err = writeShrinking(tx, recs)
			return err
		})
	}
	err := update()
	if isNoSpace(err) && s.space.releaseKept() {
		err = update()
	}
	switch {
	case err == nil:
		return n
	case !isNoSpace(err) || len(recs) == 1:
		return 0
	}
	half := len(recs) / 2
	return s.writeFreeing(recs[:half], tries) + s.writeFreeing(recs[half:], tries)
}

// writeShrinking writes the records of recs that free space: tombstones
// and records not larger than the file's record of their key (which must
// exist), unless the file holds them already. It returns how many it
// wrote.
func writeShrinking(tx *bolt.Tx, recs []*pendingRec) (int, error) {
	kv, kh, tombs := tx.Bucket(bucketKV), tx.Bucket(bucketKeyHash), tx.Bucket(bucketTombs)
	n := 0
	for _, r := range recs {
		old := kv.Get([]byte(r.Key))
		if old == nil || len(r.Raw) > len(old) || bytes.Equal(old, r.Raw) {
			continue
		}
		if err := putRecord(kv, kh, tombs, r, old); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// putRecord stores r over old (nil if none), with its key-hash and
// tombstone index entries.
func putRecord(kv, kh, tombs *bolt.Bucket, r *pendingRec, old []byte) error {
	if err := reindexTomb(tombs, r.Key, old, false); err != nil {
		return err
	}
	if err := reindexTomb(tombs, r.Key, r.Raw, true); err != nil {
		return err
	}
	if err := kv.Put([]byte(r.Key), r.Raw); err != nil {
		return err
	}
	return kh.Put(keyHashKey(r.KeyHash, r.Key), r.Hash[:])
}
