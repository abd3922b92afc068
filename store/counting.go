package store

import (
	"errors"
	"math"
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Counting in the background (docs/ARCHITECTURE.md, "The digest at
// restart"). When Open finds no current digest snapshot (a crash), it
// does not read every record before it serves: it begins one read
// transaction, the file as Open found it (T0), and a goroutine reads the
// records through it while the store serves reads and writes.
//
// Meanwhile the digest tree and the key count hold only what changed
// since T0: the replayed log, then every commit and purge, each a change
// from a record's previous bytes to its new ones, which is what the tree
// is updated with anyway (XOR out the old hash, XOR in the new) and what
// the count is moved by. The tree of the file at T0 XORed with those
// changes is the tree of the records now, and the count at T0 plus the
// moves is the count now, whatever order the changes came in, so the
// build folds its result in once it is complete and nothing else in the
// store changes. The file's later transactions (flushes, purges) do not
// disturb it: the read transaction keeps seeing T0.
//
// Until then Root, TopDigests and LeafDigests return zeros and Counting
// is true: the cluster offers no root and runs no anti-entropy session
// with a partial tree. Keys returns the keys counted so far.

// countInlineSize is the largest file counted in Open rather than in the
// background: at about 1 µs a record and 1 KiB of file a record
// (docs/BENCHMARKS.md, "Keys: 1 M and 10 M"), some 50 ms, and a store
// this small never shows a node without a digest.
const countInlineSize = 64 << 20

// countMmapRoom is how far beyond its size a file that may be counted in
// the background is mapped at Open (countMmap).
const countMmapRoom = 1 << 30

// countMmap returns the size to map the file at path with at Open: 0
// (bbolt's choice) for a file counted in Open, else its size plus as
// much again, at least countMmapRoom. The build's read transaction stays
// open while the store flushes, and bbolt grows its mapping only once
// every read transaction has ended, holding off every new one meanwhile:
// mapped with room to spare, the file can grow while it is counted
// without stalling reads and flushes until the count ends. The mapping is
// address space, not memory.
func countMmap(path string, inline int64) int {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= inline {
		return 0
	}
	return int(min(fi.Size()+max(fi.Size(), countMmapRoom), math.MaxInt))
}

// errStopped ends a build that Close stopped.
var errStopped = errors.New("counting stopped")

// countEvery is how many records the build reads between looks at
// whether Close stopped it, and between updates of its progress.
const countEvery = 1 << 14

// counter is a build in progress.
type counter struct {
	tx      *bolt.Tx      // the file at T0; rolled back by the build
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the build ended: complete, stopped or failed
	counted atomic.Uint64 // live records read so far, for Keys
	started time.Time
	err     error // set before done is closed: a record that does not decode
}

// ttlFound is a record with a TTL the build read whose deadline Open did
// not restore (bucket ttl lacked it: written in the second before a
// crash); the build gives it one unless it changed since T0.
type ttlFound struct {
	key  string
	hash Hash
	head ttlHead
}

// newCounter returns the build of the file in tx, which Open has read
// (the replayed log, the deadlines) and starts once it succeeded.
func newCounter(tx *bolt.Tx) *counter {
	return &counter{tx: tx, stop: make(chan struct{}), done: make(chan struct{}), started: time.Now()}
}

// runCount is the build's goroutine.
func (s *Store) runCount(c *counter) {
	defer close(c.done)
	d := new(digest)
	var keys uint64
	var found []ttlFound
	ttl := c.tx.Bucket(bucketTTL)
	n := -1
	if hold := s.opts.CountHold; hold != nil {
		select {
		case <-hold:
		case <-c.stop:
		}
	}
	maxL, err := s.rebuild(c.tx, d, &keys, func(k []byte, hash Hash, h recordHead) error {
		if n++; n%countEvery == 0 { // the first record too: Close may have come first
			c.counted.Store(keys)
			select {
			case <-c.stop:
				return errStopped
			default:
			}
		}
		if h.TTL > 0 && !h.Deleted {
			if v := ttl.Get(k); len(v) != 25 || Hash(v[:16]) != hash {
				found = append(found, ttlFound{key: string(k), hash: hash, head: ttlHead{hash: hash, at: h.At, ttl: h.TTL}})
			}
		}
		return nil
	})
	_ = c.tx.Rollback()
	if err == nil {
		err = s.foldCount(c, d, keys, maxL, found)
	}
	switch {
	case err == nil:
		s.log.Info("digest and keys counted", "keys", s.Keys(), "took", time.Since(c.started))
	case errors.Is(err, errStopped), errors.Is(err, ErrClosed):
	default:
		c.err = err
		s.log.Error("counting the records failed: this node offers no digest to its peers", "error", err)
	}
}

// foldCount adds the file at T0 (d, keys) to the changes since, gives
// the records in found their deadlines, and ends the build. It holds
// off commits and purges (commitMu) meanwhile.
func (s *Store) foldCount(c *counter, d *digest, keys, maxL uint64, found []ttlFound) error {
	select {
	case <-c.stop:
		return errStopped
	default:
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	found, err := s.stillCurrent(found)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for i := range d.leaves {
		s.dig.leaves[i].xor(d.leaves[i])
	}
	for i := range d.tops {
		s.dig.tops[i].xor(d.tops[i])
	}
	s.dig.computeRoot()
	s.keys += keys
	s.count = nil
	close(s.counted)
	if len(found) > 0 {
		s.lifes.mu.Lock()
		nowMs := s.opts.Now().UnixMilli()
		for _, f := range found {
			if _, ok := s.lifes.m[f.key]; !ok {
				s.lifes.restore(f.key, f.head, nowMs)
			}
		}
		s.lifes.mu.Unlock()
		s.lifes.wake()
	}
	s.raise(maxL) // every stored lamport is below the reservation already; this is a guard
	return nil
}

// stillCurrent keeps the records of found that are still the keys'
// current ones. The caller holds commitMu, so none changes until it
// publishes what it decided.
func (s *Store) stillCurrent(found []ttlFound) ([]ttlFound, error) {
	out := found[:0]
	for _, f := range found {
		var cur bool
		err := s.read(func() bool {
			if p := s.pendingRec(f.key); p != nil {
				cur = p.Hash == f.hash
				return false
			}
			return true
		}, func(tx *bolt.Tx) error {
			raw := tx.Bucket(bucketKV).Get([]byte(f.key))
			cur = raw != nil && hashBytes(raw) == f.hash
			return nil
		})
		if err != nil {
			return nil, err
		}
		if cur {
			out = append(out, f)
		}
	}
	return out, nil
}

// Counting reports whether the store is still counting its records after
// an Open that found no current digest snapshot (a crash): the digest
// tree is not known yet (Root is zero) and Keys is a lower bound. It
// turns false once, and never back.
func (s *Store) Counting() bool {
	select {
	case <-s.counted:
		return false
	default:
		return true
	}
}

// Counted returns a channel closed once the store has counted its records
// (at once after a clean stop). A build that failed (a record that does
// not decode; Check reports it) never closes it.
func (s *Store) Counted() <-chan struct{} { return s.counted }

// stopCount stops a build in progress and waits for it (Close).
func (s *Store) stopCount() {
	s.mu.RLock()
	c := s.count
	s.mu.RUnlock()
	if c == nil {
		return
	}
	close(c.stop)
	<-c.done
}

// countErr waits for a build in progress to end and returns its error
// (Check): nil when it completed or there was none.
func (s *Store) countErr() error {
	s.mu.RLock()
	c := s.count
	s.mu.RUnlock()
	if c == nil {
		return nil
	}
	<-c.done
	return c.err
}
