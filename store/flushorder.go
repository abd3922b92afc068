package store

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// putKeyHashes writes the key-hash index entries of a flush in the
// index's own order (key hash, then key). Within one bbolt transaction a
// node is split only at commit, so entries put in any other order (the
// records' key order, say) are inserted into the middle of ever larger
// nodes, each insert moving the rest: a flush of 25,000 records into an
// empty index spent most of its time in memmove (a bootstrap: 70 % of the
// receiving node's CPU, docs/BENCHMARKS.md "Cluster").
func putKeyHashes(kh *bolt.Bucket, p *pendingSet, skip map[string]bool) error {
	type entry struct {
		k []byte
		v []byte
	}
	es := make([]entry, 0, len(p.Recs))
	for k, r := range p.Recs {
		if skip[k] {
			continue
		}
		es = append(es, entry{keyHashKey(r.KeyHash, k), r.Hash[:]})
	}
	slices.SortFunc(es, func(a, b entry) int { return bytes.Compare(a.k, b.k) })
	for _, e := range es {
		if err := kh.Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}
