package store

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"
)

// ApplyBatch applies received records as Apply does, each with its own
// result, but commits them together: one batch in the log per up to
// maxBatch records (or maxBatchBytes), computed on the caller's goroutine.
// A sync session applies a frame of several hundred records this way; one
// Apply per record on its own goroutine cost a goroutine, a hand-over to
// the committer and back, and a growing stack per record, more CPU than
// storing the record (docs/BENCHMARKS.md, "Cluster").
//
// res[i] and errs[i] are recs[i]'s outcome; a record that is not valid
// gets its error and is not stored, and does not fail the others (a
// failed write fails the records of its batch). Expired tombstones and
// records the purge log covers are Dropped, as by Apply. The error returned is one
// that stopped the call before every record was committed (a closed
// store, ctx): the records left have it in errs too. The store keeps the records'
// Values and VVs: do not modify them.
func (s *Store) ApplyBatch(ctx context.Context, recs []Record) (res []ApplyResult, errs []error, err error) {
	res, errs = make([]ApplyResult, len(recs)), make([]error, len(recs))
	reqs := make([]*request, 0, len(recs))
	idx := make([]int, 0, len(recs)) // reqs[j] is recs[idx[j]]
	var expired []int                // expired tombstones (purge.go), by index
	for i := range recs {
		rec := recs[i]
		raw, h, exp, err := s.ready(&rec, nil)
		if errs[i] = err; err != nil {
			continue
		}
		if exp {
			expired = append(expired, i) // never stored: the purger takes it, after the batch
			continue
		}
		reqs = append(reqs, &request{kind: reqApply, key: rec.Key, rec: rec, raw: raw, hash: h})
		idx = append(idx, i)
	}
	if s.opts.Resolver != nil {
		s.preResolveAll(reqs) // as Apply: a hook does not stall the commit
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		err = ErrClosed
	} else {
		s.inflight.Add(1) // as submit: before Close's Wait
		s.mu.RUnlock()
		defer s.inflight.Done()
	}
	for start := 0; start < len(reqs); {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			for j := start; j < len(reqs); j++ {
				errs[idx[j]] = err
			}
			return res, errs, err
		}
		end, size := start, 0
		for end < len(reqs) && end-start < maxBatch && (end == start || size+reqs[end].size() <= maxBatchBytes) {
			reqs[end].done = make(chan struct{}) // commitLocked closes it
			size += reqs[end].size()
			end++
		}
		s.commitMu.Lock()
		s.commitLocked(reqs[start:end])
		s.commitMu.Unlock()
		for j := start; j < end; j++ {
			res[idx[j]], errs[idx[j]] = reqs[j].res, reqs[j].err
		}
		start = end
	}
	for _, i := range expired {
		if err == nil {
			res[i], errs[i] = s.applyExpired(ctx, recs[i])
			if errs[i] != nil && (errs[i] == ErrClosed || ctx.Err() != nil) {
				err = errs[i]
			}
		} else {
			errs[i] = err
		}
	}
	return res, errs, err
}

// preResolveAll is Apply's preResolve for a batch: the current records are
// read in one read transaction, and only those whose version vector is
// concurrent with the received one are decoded whole and resolved. The
// result is advisory (the commit uses it only if the record it was
// resolved against is still current), so a flush moving records from the
// pending set into the file meanwhile costs only a resolution in the
// commit.
func (s *Store) preResolveAll(reqs []*request) {
	s.resolveAll(reqs, s.concurrentCurrent(reqs))
}

// concurrentCurrent reads the current records of reqs in one read
// transaction and returns, by index, those whose version vector is
// concurrent with the received one (preResolveAll); nil when none is.
//
// It runs on a receive loop for every datagram (Applier.Apply), where the
// common case is a record that descends from the stored one: that is told
// from the stored bytes in place (dominatesStored), and only a record it
// does not descend from is decoded. The keys found in the pending sets
// need no read transaction, and those that do share one cursor.
func (s *Store) concurrentCurrent(reqs []*request) map[int]*Record {
	var curs map[int]*Record // the concurrent ones: resolved after the read, which a hook must not hold open
	check := func(i int, raw []byte, copied bool) {
		r := reqs[i]
		if dominatesStored(r.rec.VV, raw) {
			return // newer than the stored record, or the same: nothing to resolve
		}
		if m, err := decodeMeta(raw); err != nil || r.rec.VV.Compare(m.VV) != Concurrent {
			return
		}
		if !copied {
			raw = bytes.Clone(raw) // the file's bytes are valid only in the transaction
		}
		var cur Record
		if decodeStored(r.key, raw, &cur) == nil && !s.hide(&cur) {
			if curs == nil {
				curs = map[int]*Record{}
			}
			curs[i] = &cur
		}
	}
	raws := make([][]byte, len(reqs)) // the pending sets' records, which stay as they are
	_ = s.read(func() bool {
		file := false
		for i, r := range reqs {
			if p := s.pendingRec(r.key); p != nil {
				raws[i] = p.Raw
			} else {
				file = true
			}
		}
		return file
	}, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		for i, r := range reqs {
			if raws[i] != nil {
				continue
			}
			if k, v := c.Seek([]byte(r.key)); v != nil && string(k) == r.key {
				check(i, v, false)
			}
		}
		return nil
	})
	for i, raw := range raws {
		if raw != nil {
			check(i, raw, true)
		}
	}
	return curs
}

// resolveAll resolves each of reqs against its concurrent current record
// (concurrentCurrent), outside any transaction: a hook may take its time.
func (s *Store) resolveAll(reqs []*request, curs map[int]*Record) {
	for i, cur := range curs {
		r := reqs[i]
		r.pre = &preResolved{cur: cur.Hash(), rec: Resolve(r.key, cur, &r.rec, s.opts.Resolver)}
	}
}

// PeekAll calls fn with every record Peek would return (tombstones,
// records past their deadline with Left 0; not expired tombstones), in key
// order, reading a chunk of records per read transaction, so it is not a
// snapshot and holds no transaction while fn runs. A sync session sends
// a peer that holds nothing everything this way (a bootstrap): one read
// per chunk where Peek took one per record, and in key order, so that the
// peer's flushes append to its file rather than rewrite pages all over it.
// An error from fn stops it and is returned.
func (s *Store) PeekAll(fn func(Record) error) error {
	return s.scan("", false, func(rec Record) error {
		if s.hide(&rec) && s.Expired(&rec) {
			return nil
		}
		return fn(rec)
	})
}
