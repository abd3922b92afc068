package store

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// The bulk loader (docs/ARCHITECTURE.md, "The bootstrap pipeline"). A
// bootstrap receives every record of a peer's store, in key order, into a
// store that holds (nearly) none of them. Through ApplyBatch each record
// goes through the log, the pending set and a flush that writes the
// key-hash index out of order: ~12 µs of CPU a record in process, more in
// ckd. A Loader writes such records into the bbolt file itself, in
// transactions of loadChunk records: the kv bucket appended with full
// pages, the key-hash index entries staged in a sorted run of their own
// (merged at the end, see "The staged index" below), the change-log
// events, tombstone index, digest, key count and deadlines exactly as a
// flush of the same records through ApplyBatch leaves them, and durable
// when the transaction commits.
//
// Only records whose key the store holds no version of, pending or
// stored, and no purge-log entry of, take this path: everything else
// (and every chunk not in strictly increasing key order, as an older
// peer's leaf-order stream) goes through the committer as ApplyBatch
// sends it, so that a concurrent local write or UPDATE is resolved by the
// ordinary rules. A chunk holds the commit lock from its check to its
// publication, and writes only once everything pending is flushed: the
// file is then the store's whole state, and a crash between chunks leaves
// a file that is a consistent store (the log holding only batches after
// the chunk).

const (
	// loadChunk bounds the records of one bulk transaction, and
	// loadChunkBytes their bytes: what the receiver holds (twice: one
	// chunk filling while the previous one is written) and the bbolt
	// nodes one transaction dirties. Under ckd's soft memory limit
	// (96 MiB) chunks of 16,384 records and 8 MiB cost ~1 µs a record
	// more in collections than these (docs/BENCHMARKS.md, "Bootstrap by
	// bulk load"); a smaller chunk costs a commit (two fsyncs) and a run
	// of the staged index more per 8,192 records.
	loadChunk      = 8192
	loadChunkBytes = 4 << 20
)

// Loaded is the outcome of one record given to a Loader: the record as
// given, and what ApplyBatch would have returned for it.
type Loaded struct {
	Record Record
	Result ApplyResult
	Err    error
}

// Loader writes a bootstrap's records into the store in sorted bbolt
// transactions of its own (see above). Load and Flush are called by one
// goroutine; a second goroutine writes a chunk while the next one fills.
// Close must be called when done.
type Loader struct {
	s     *Store
	fill  *loadBatch
	work  chan *loadBatch // to the writer: at most one waits
	out   chan *loadBatch // written, back to Load or Flush
	queue int             // batches handed to the writer, not yet back
	chunk int             // records a chunk (loadChunk; tests make it smaller)
	once  sync.Once
}

// loadBatch is one chunk of a Loader's records.
type loadBatch struct {
	recs  []loadRec
	bytes int
	done  []Loaded
}

// loadRec is a record ready to store: computed on the caller's
// goroutine, as ApplyBatch computes its requests.
type loadRec struct {
	rec Record
	raw []byte
	h   Hash // of raw
	kh  Hash // KeyHash(rec.Key)
}

// NewLoader returns a Loader for a bootstrap into s.
func (s *Store) NewLoader() *Loader {
	l := &Loader{s: s, fill: &loadBatch{}, work: make(chan *loadBatch), out: make(chan *loadBatch, 2), chunk: loadChunk}
	go l.writer()
	return l
}

// writer writes the batches handed to it, in order.
func (l *Loader) writer() {
	for b := range l.work {
		l.s.loadBatch(b)
		l.out <- b
	}
	close(l.out)
}

// Load takes recs, in key order, and returns the outcomes of those
// written by now: of records refused at once (validation), and of whole
// chunks written (durable, or failed) since the last call. A record's
// outcome is not known before its chunk is written: Flush writes what is
// left. The store keeps the records' Values and VVs: do not modify them.
// The error is one that stops the load (a closed store, ctx): the records
// given then get it as their outcome.
func (l *Loader) Load(ctx context.Context, recs []Record) ([]Loaded, error) {
	var out []Loaded
	s := l.s
	for i := range recs {
		rec := recs[i]
		raw, h, expired, err := s.ready(&rec, nil)
		if err != nil {
			out = append(out, Loaded{Record: recs[i], Err: err})
			continue
		}
		if expired {
			// Never stored (purge.go): after everything before it, as
			// ApplyBatch would order it.
			done, err := l.Flush(ctx)
			out = append(out, done...)
			if err != nil {
				return append(out, Loaded{Record: recs[i], Err: err}), err
			}
			res, err := s.applyExpired(ctx, rec)
			out = append(out, Loaded{Record: recs[i], Result: res, Err: err})
			continue
		}
		l.fill.recs = append(l.fill.recs, loadRec{rec: rec, raw: raw, h: h, kh: KeyHash(rec.Key)})
		l.fill.bytes += len(raw)
		if len(l.fill.recs) >= l.chunk || l.fill.bytes >= loadChunkBytes {
			if err := l.hand(ctx, &out); err != nil {
				return out, err
			}
		}
	}
	for l.queue > 0 {
		select {
		case b := <-l.out:
			l.queue--
			out = append(out, b.done...)
			continue
		default:
		}
		break
	}
	return out, ctx.Err()
}

// hand gives the filled chunk to the writer, waiting while it writes the
// one before, and collects the outcomes of chunks written meanwhile.
func (l *Loader) hand(ctx context.Context, out *[]Loaded) error {
	b := l.fill
	l.fill = &loadBatch{}
	for {
		select {
		case l.work <- b:
			l.queue++
			return nil
		case d := <-l.out:
			l.queue--
			*out = append(*out, d.done...)
		case <-ctx.Done():
			for _, r := range b.recs {
				*out = append(*out, Loaded{Record: r.rec, Err: ctx.Err()})
			}
			return ctx.Err()
		}
	}
}

// Finish writes every record given so far, as Flush, and then merges the
// staged index (MergeStaged). A bootstrap flushes instead, and merges once
// it has declared itself synced: the store is whole and correct with the
// index staged.
func (l *Loader) Finish(ctx context.Context) ([]Loaded, error) {
	out, err := l.Flush(ctx)
	if err != nil {
		return out, err
	}
	_, err = l.s.MergeStaged(ctx)
	return out, err
}

// Flush writes every record given so far and returns the outcomes not
// yet returned. Once it returns without an error, everything loaded is
// durable.
func (l *Loader) Flush(ctx context.Context) ([]Loaded, error) {
	var out []Loaded
	if len(l.fill.recs) > 0 {
		if err := l.hand(ctx, &out); err != nil {
			return out, err
		}
	}
	for l.queue > 0 {
		select {
		case b := <-l.out:
			l.queue--
			out = append(out, b.done...)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// Close stops the writer once it has written what it was handed; records
// given since the last Flush and not handed over are dropped. It is safe
// to call more than once.
func (l *Loader) Close() {
	l.once.Do(func() {
		close(l.work)
		for range l.out {
		}
	})
}

// loadBatch writes one chunk: in a bulk transaction the records no
// version of which the store holds, the others through the committer.
func (s *Store) loadBatch(b *loadBatch) {
	b.done = make([]Loaded, len(b.recs))
	for i := range b.recs {
		b.done[i].Record = b.recs[i].rec
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		for i := range b.done {
			b.done[i].Err = ErrClosed
		}
		return
	}
	s.inflight.Add(1) // as submit: before Close's Wait
	s.mu.RUnlock()
	defer s.inflight.Done()

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	var routed []int // by the committer: all when the bulk path cannot be taken
	bulk := sortedKeys(b.recs) && !s.space.limited.Load() && s.flushAll() == nil
	if bulk {
		var err error
		routed, err = s.writeBulk(b)
		if err != nil {
			s.log.Debug("bulk load: a chunk goes through the log instead", "records", len(b.recs), "error", err)
			bulk = false
		}
	}
	if !bulk {
		routed = make([]int, len(b.recs))
		for i := range routed {
			routed[i] = i
		}
	}
	s.commitRouted(b, routed)
}

// sortedKeys reports whether the chunk's keys strictly increase (no key
// twice): the bulk path's precondition.
func sortedKeys(recs []loadRec) bool {
	for i := 1; i < len(recs); i++ {
		if recs[i-1].rec.Key >= recs[i].rec.Key {
			return false
		}
	}
	return true
}

// commitRouted commits the chunk's records at routed through the
// committer, as ApplyBatch does. The caller holds commitMu.
func (s *Store) commitRouted(b *loadBatch, routed []int) {
	if len(routed) == 0 {
		return
	}
	reqs := make([]*request, len(routed))
	for j, i := range routed {
		r := &b.recs[i]
		reqs[j] = &request{kind: reqApply, key: r.rec.Key, rec: r.rec, raw: r.raw, hash: r.h}
	}
	if s.opts.Resolver != nil {
		s.preResolveAll(reqs)
	}
	for start := 0; start < len(reqs); {
		end, size := start, 0
		for end < len(reqs) && end-start < maxBatch && (end == start || size+reqs[end].size() <= maxBatchBytes) {
			reqs[end].done = make(chan struct{}) // commitLocked closes it
			size += reqs[end].size()
			end++
		}
		s.commitLocked(reqs[start:end])
		start = end
	}
	for j, i := range routed {
		b.done[i].Result, b.done[i].Err = reqs[j].res, reqs[j].err
	}
}

// bulkState is what a bulk transaction changes in memory once it
// committed.
type bulkState struct {
	last, first, reserved, maxL uint64
	stored                      []int // indexes of the records written
	lives                       []lifeUpdate
}

// writeBulk writes the chunk's records that the store holds no version
// of in one bbolt transaction and publishes them; it returns the others,
// for the committer. Everything pending is flushed: the file is the
// store's state, and the caller holds commitMu, so nothing changes it
// but this transaction (and the expirer's deadlines, another bucket).
func (s *Store) writeBulk(b *loadBatch) (routed []int, err error) {
	s.mu.RLock()
	bs := bulkState{last: s.lastIndex, first: s.firstIndex, reserved: s.reserved}
	purgeLog := s.purgeLogN > 0
	s.mu.RUnlock()
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	if err := s.putBulk(tx, b, purgeLog, &bs, &routed); err != nil {
		tx.Rollback()
		return nil, err
	}
	// A read that begins after the commit finds these records in the file
	// at once, before publishBulk: their deadlines must be known by then,
	// or a record that arrived expired reads as live with its whole TTL
	// (fillLeft: no deadline known). So they are published first, and
	// dropped again if the commit fails. Nothing holds s.mu while it waits
	// for bbolt's writer lock, which this transaction holds.
	s.mu.Lock()
	s.publishLives(&txState{lives: bs.lives})
	s.mu.Unlock()
	if err := tx.Commit(); err != nil {
		s.dropLives(bs.lives)
		return nil, err
	}
	s.publishBulk(b, &bs)
	return routed, nil
}

// putBulk is writeBulk's transaction.
func (s *Store) putBulk(tx *bolt.Tx, b *loadBatch, purgeLog bool, bs *bulkState, routed *[]int) error {
	kv, log, meta, tombs := tx.Bucket(bucketKV), tx.Bucket(bucketChanges), tx.Bucket(bucketMeta), tx.Bucket(bucketTombs)
	purged := tx.Bucket(bucketPurged)
	// Appended in key order: pages filled, not split in halves.
	kv.FillPercent = 1.0
	log.FillPercent = 1.0
	// Keys sort after every stored one in a bootstrap into an empty
	// store: then none of them can be stored already.
	lastKey, _ := kv.Cursor().Last()
	beyond := lastKey == nil || bytes.Compare(lastKey, []byte(b.recs[0].rec.Key)) < 0
	entries := make([]stagedEntry, 0, len(b.recs))
	for i := range b.recs {
		r := &b.recs[i]
		key := []byte(r.rec.Key)
		if !beyond && kv.Get(key) != nil || purgeLog && purged.Get(keyHashKey(r.kh, r.rec.Key)) != nil {
			*routed = append(*routed, i)
			continue
		}
		if err := kv.Put(key, r.raw); err != nil {
			return err
		}
		if r.rec.Deleted || r.rec.TTL > 0 {
			if err := tombs.Put(tombKey(r.rec.At+max(r.rec.TTL, 0), r.rec.Key), nil); err != nil {
				return err
			}
		}
		bs.last++
		ev := appendEvent(make([]byte, 0, 40+len(key)), opOf(&r.rec), r.rec.Key, r.rec.Lamport, r.rec.Origin)
		if err := log.Put(u64(bs.last), ev); err != nil {
			return err
		}
		entries = append(entries, stagedEntry{keyHashKey(r.kh, r.rec.Key), r.h[:]})
		bs.maxL = max(bs.maxL, r.rec.Lamport)
		bs.stored = append(bs.stored, i)
		if r.rec.TTL > 0 && !r.rec.Deleted {
			bs.lives = append(bs.lives, lifeUpdate{key: r.rec.Key, hash: r.h, ttl: r.rec.TTL, left: r.rec.Left})
		}
	}
	if len(bs.stored) == 0 {
		return nil
	}
	if err := stageEntries(tx, entries); err != nil {
		return err
	}
	if hist := uint64(s.opts.WatchHistory); bs.last >= hist && bs.first+hist <= bs.last {
		bs.first = bs.last - hist + 1
	}
	if k, _ := log.Cursor().First(); k != nil {
		for i := binary.BigEndian.Uint64(k); i < bs.first; i++ {
			if err := log.Delete(u64(i)); err != nil {
				return err
			}
		}
	}
	if bs.maxL > bs.reserved {
		bs.reserved = bs.maxL + lamportBlock
		if err := meta.Put(metaReserved, u64(bs.reserved)); err != nil {
			return err
		}
	}
	return meta.Put(metaLast, u64(bs.last))
}

// publishBulk applies a committed bulk transaction to the in-memory
// state, as publish does a batch's; the deadlines went first (writeBulk).
func (s *Store) publishBulk(b *loadBatch, bs *bulkState) {
	if len(bs.stored) == 0 {
		return
	}
	s.mu.Lock()
	s.reserved = bs.reserved
	s.lastIndex, s.firstIndex = bs.last, bs.first
	for _, i := range bs.stored {
		r := &b.recs[i]
		s.dig.update(r.kh, Hash{}, r.h)
		if !r.rec.Deleted {
			s.keys++
		}
		b.done[i].Result = ApplyResult{Outcome: Applied, Record: r.rec}
	}
	s.dig.computeRoot()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	s.raise(bs.maxL)
	s.commits.Add(1)
	s.requests.Add(uint64(len(bs.stored)))
}

// The staged index. The key-hash index is keyed by key hash, so a chunk
// that appends to the kv bucket puts its index entries all over the
// index: at a million keys each transaction rewrote most of the index's
// pages, two thirds of the loader's CPU. A bulk transaction therefore
// writes its chunk's entries, sorted, into a new bucket of their own (a
// run) under bucketStaged, filling whole pages; MergeStaged moves them
// into bucket keyhash in key-hash order at the end of the load, a range
// of key hashes a transaction. Until then the index is bucket keyhash
// and the runs together:
//
//   - an entry in bucket keyhash wins over a staged one for the same key
//     (a flush or a freeing write wrote the key after the load did);
//   - a staged entry whose key bucket keyhash lacks is the record's: only
//     the loader writes staged entries, for keys the store held no
//     version of, and the purger removes a record's staged entry with it
//     (purge.go), so at most one run holds a key.
//
// LeafEntries and Check read them so; the runs survive a crash as the
// transactions that wrote them did, and the next MergeStaged (the end of
// the next bootstrap) moves them.
var bucketStaged = []byte("keyhash-staged")

// stagedEntry is an index entry: KeyHash(key) ‖ key → the record's hash.
type stagedEntry struct{ k, v []byte }

// stageEntries writes entries as a new run.
func stageEntries(tx *bolt.Tx, entries []stagedEntry) error {
	slices.SortFunc(entries, func(a, b stagedEntry) int { return bytes.Compare(a.k, b.k) })
	st, err := tx.CreateBucketIfNotExists(bucketStaged)
	if err != nil {
		return err
	}
	seq, err := st.NextSequence()
	if err != nil {
		return err
	}
	run, err := st.CreateBucket(u64(seq))
	if err != nil {
		return err
	}
	run.FillPercent = 1.0
	for _, e := range entries {
		if err := run.Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// forStaged calls fn with the staged entries whose key starts with
// prefix (nil: all), run by run. The caller applies the rules above.
func forStaged(tx *bolt.Tx, prefix []byte, fn func(k, v []byte) error) error {
	st := tx.Bucket(bucketStaged)
	if st == nil {
		return nil
	}
	return st.ForEachBucket(func(name []byte) error {
		c := st.Bucket(name).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// unstage removes key's staged entry, if any (a purge removes its
// record).
func unstage(tx *bolt.Tx, kh Hash, key string) error {
	st := tx.Bucket(bucketStaged)
	if st == nil {
		return nil
	}
	var runs [][]byte // named first: the runs change, not while the parent is iterated
	_ = st.ForEachBucket(func(name []byte) error { runs = append(runs, name); return nil })
	k := keyHashKey(kh, key)
	for _, name := range runs {
		if err := st.Bucket(name).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// MergeStaged moves the staged index entries (above) into bucket keyhash
// and drops the runs, in a transaction per 256th of the key hashes (a
// few thousand entries each at a million keys), and returns how many it
// moved. A store with none costs a read. It stops between transactions
// when ctx ends: what is left stays staged, the store as correct as
// before, for the next call.
func (s *Store) MergeStaged(ctx context.Context) (int, error) {
	var any bool
	if err := s.db.View(func(tx *bolt.Tx) error { any = tx.Bucket(bucketStaged) != nil; return nil }); err != nil {
		return 0, s.classify(err)
	}
	if !any {
		return 0, nil
	}
	moved := 0
	for top := range 256 {
		if err := ctx.Err(); err != nil {
			return moved, err
		}
		n := 0
		if err := s.db.Update(func(tx *bolt.Tx) (err error) { n, err = mergeRange(tx, byte(top)); return err }); err != nil {
			return moved, s.classify(err)
		}
		moved += n
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStaged) == nil {
			return nil
		}
		return tx.DeleteBucket(bucketStaged)
	})
	if err != nil {
		return moved, s.classify(err)
	}
	return moved, nil
}

// mergeRange moves the staged entries whose key hash starts with byte
// top into bucket keyhash, where it lacks their key, in key-hash order: a
// merge of the runs, each already in that order. The runs keep the
// entries until they are dropped: bucket keyhash wins. It returns how
// many it put.
func mergeRange(tx *bolt.Tx, top byte) (int, error) {
	st := tx.Bucket(bucketStaged)
	if st == nil {
		return 0, nil
	}
	prefix := []byte{top}
	var runs runHeap
	err := st.ForEachBucket(func(name []byte) error {
		c := st.Bucket(name).Cursor()
		if k, v := c.Seek(prefix); k != nil && k[0] == top {
			runs = append(runs, &runCursor{c: c, k: k, v: v})
		}
		return nil
	})
	if err != nil || len(runs) == 0 {
		return 0, err
	}
	heap.Init(&runs)
	kh := tx.Bucket(bucketKeyHash)
	kh.FillPercent = 1.0 // mostly appended in order; later inserts split pages as ever
	// Bucket keyhash holds nothing in the range (a bootstrap into an empty
	// store): no entry of its to give way to.
	k, _ := kh.Cursor().Seek(prefix)
	empty := k == nil || k[0] != top
	n := 0
	for len(runs) > 0 {
		r := runs[0]
		if empty || kh.Get(r.k) == nil {
			if err := kh.Put(r.k, r.v); err != nil {
				return n, err
			}
			n++
		}
		if r.k, r.v = r.c.Next(); r.k == nil || r.k[0] != top {
			heap.Pop(&runs)
		} else {
			heap.Fix(&runs, 0)
		}
	}
	return n, nil
}

// runCursor is a run's place in mergeRange.
type runCursor struct {
	c    *bolt.Cursor
	k, v []byte
}

// runHeap orders runs by their current key.
type runHeap []*runCursor

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].k, h[j].k) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runCursor)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// stagedLeaf adds to out, the entries of a leaf from bucket keyhash, the
// leaf's staged entries of keys bucket keyhash lacks, with a pending
// record's hash where there is one (LeafEntries); out stays in key-hash
// order.
func (s *Store) stagedLeaf(tx *bolt.Tx, prefix []byte, out *[]LeafEntry, pend map[string]LeafEntry) error {
	if tx.Bucket(bucketStaged) == nil {
		return nil
	}
	have := make(map[string]bool, len(*out))
	for _, e := range *out {
		have[e.Key] = true
	}
	n := len(*out)
	err := forStaged(tx, prefix, func(k, v []byte) error {
		if len(k) <= len(Hash{}) || len(v) != len(Hash{}) {
			return fmt.Errorf("%w: staged key-hash entry %x", ErrCorrupt, k)
		}
		var e LeafEntry
		copy(e.KeyHash[:], k)
		e.Key = string(k[len(e.KeyHash):])
		if have[e.Key] {
			return nil
		}
		have[e.Key] = true
		copy(e.Hash[:], v)
		if p, ok := pend[e.Key]; ok {
			e.Hash = p.Hash
			delete(pend, e.Key)
		}
		*out = append(*out, e)
		return nil
	})
	if len(*out) > n {
		slices.SortFunc(*out, byKeyHashKey)
	}
	return err
}

// checkStaged checks the staged entries that count (those of keys bucket
// keyhash lacks) as checkIndex checks bucket keyhash's, and returns how
// many there are.
func checkStaged(tx *bolt.Tx, c *checker) int {
	kv, kh := tx.Bucket(bucketKV), tx.Bucket(bucketKeyHash)
	seen := map[string]bool{}
	_ = forStaged(tx, nil, func(k, v []byte) error {
		if len(k) <= len(Hash{}) {
			c.add("staged key-hash entry %x too short", k)
			return nil
		}
		if kh.Get(k) != nil {
			return nil // bucket keyhash wins
		}
		key := string(k[len(Hash{}):])
		if seen[key] {
			c.add("key-hash entry for %q staged twice", key)
			return nil
		}
		seen[key] = true
		if h := KeyHash(key); !bytes.Equal(k[:len(h)], h[:]) {
			c.add("staged key-hash entry for %q has the wrong hash", key)
		}
		rec := kv.Get([]byte(key))
		if rec == nil {
			c.add("staged key-hash entry for %q without a record", key)
		} else if h := hashBytes(rec); !bytes.Equal(v, h[:]) {
			c.add("staged key-hash entry for %q has hash %x, the record %s", key, v, h)
		}
		return nil
	})
	return len(seen)
}
