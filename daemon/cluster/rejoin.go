package cluster

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// The two halves of a rejoin (docs/PROTOCOL.md, Long separations) that decide what
// a stale node keeps: which of its records count as its own writes since
// the separation, and how each is written again on the fresh store. The
// daemon moves files and restarts the node around them; they live here so
// that the simulated scenarios run the very code the daemon runs.

// OwnWriteSource is what OwnWrites reads. *store.Store implements it.
type OwnWriteSource interface {
	NodeID() store.NodeID
	ScanAll(prefix string, fn func(store.Record) error) error
	ScanPurged(fn func(store.Record) error) error
}

// OwnWrites calls fn with every record of st whose origin is st's node
// and whose write was not before cutoff (every one of them when cutoff is
// zero) — records in key order, then deletes whose tombstones were purged
// since — : the stale node's own writes since it was last in sync, which a
// rejoin re-applies. cutoff is the node's LatestInSync, and
// a record's At is its origin's wall clock, so both are the stale node's
// clock. An error from fn stops the scan and is returned.
//
// At counts whole milliseconds, so a write in cutoff's millisecond may
// come before or after it. It is taken: one made after the last sync —
// split from the peers before its UPDATE went out — would be lost
// otherwise, while one the peers already hold is skipped by Reapply.
func OwnWrites(st OwnWriteSource, cutoff time.Time, fn func(store.Record) error) error {
	self, from := st.NodeID(), cutoff.UnixMilli()
	own := func(r store.Record) error {
		if r.Origin != self || !cutoff.IsZero() && r.At < from {
			return nil
		}
		return fn(r)
	}
	// Deletes too, however old: an expired tombstone is a delete the
	// stale node made, and a purged one is in its purge log — unless the
	// key holds a record again, which is then the key's latest state.
	purged := map[string]store.Record{}
	err := st.ScanPurged(func(r store.Record) error {
		if r.Origin == self && (cutoff.IsZero() || r.At >= from) {
			purged[r.Key] = r
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = st.ScanAll("", func(r store.Record) error {
		delete(purged, r.Key)
		return own(r)
	})
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(purged)) {
		if err := fn(purged[k]); err != nil {
			return err
		}
	}
	return nil
}

// LocalWriter is the local store as Reapply writes it. *store.Store
// implements it.
type LocalWriter interface {
	Get(key string) (store.Record, bool, error)
	Set(ctx context.Context, key string, value []byte, ifVersion *uint64) (store.Record, error)
	Delete(ctx context.Context, key string, ifVersion *uint64) (store.Record, error)
}

// Reapply writes old — one of OwnWrites of a stale store — to st as a new
// local write (a delete for a tombstone) and replicates it, unless st
// already holds the key in a version that descends from old: the write
// reached the cluster before the separation, or by replication. It
// reports whether it wrote.
func (n *Node) Reapply(ctx context.Context, st LocalWriter, old store.Record) (bool, error) {
	cur, found, err := st.Get(old.Key)
	if err != nil {
		return false, err
	}
	if found && cur.VV.Dominates(old.VV) {
		return false, nil
	}
	var rec store.Record
	if old.Deleted {
		rec, err = st.Delete(ctx, old.Key, nil)
	} else {
		rec, err = st.Set(ctx, old.Key, old.Value, nil)
	}
	if err != nil {
		return false, err
	}
	n.Replicate(rec)
	return true, nil
}
