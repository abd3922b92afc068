package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The change log: every committed change (a local write, an applied or a
// resolved record; not an ignored one) appends an Event under the next
// index, in the commit's own transaction, so indexes survive restarts and
// have no gaps. The log keeps the last WatchHistory events, trimmed in the
// same transaction.
//
// Watchers hold no buffer of their own: each waits on a channel that every
// commit closes and replaces, then re-reads the log from its last index, in
// bounded chunks. A slow watcher costs nothing until the log is trimmed past
// it, and then it gets ErrCompacted.

// Op is the kind of a change.
type Op string

// Ops.
const (
	OpSet Op = "set"
	OpDel Op = "del"
	// OpExpire: the key's record reached its deadline on this node
	// (ttl.go); the record is unchanged, and hidden.
	OpExpire Op = "expire"
)

func opOf(r *Record) Op {
	if r.Deleted {
		return OpDel
	}
	return OpSet
}

// Event is one committed change.
type Event struct {
	Index   uint64 // position in the log, from 1, per node
	Op      Op
	Key     string
	Version uint64 // the stored record's lamport
	Origin  NodeID // the stored record's origin
}

// watchChunk bounds the events a watcher reads per read transaction.
const watchChunk = 256

// LastIndex returns the index of the last committed change (0: none yet).
func (s *Store) LastIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastIndex
}

// Watch calls fn for every change with Index > since (fromNow: > LastIndex()
// at the call) whose key has prefix: first those in the log, then live ones
// as they commit, in index order with no gap and no duplicate. It returns
// ctx.Err() when ctx ends, fn's error if fn fails, ErrClosed when the store
// closes, and ErrCompacted — before fn is first called — when since is
// older than the log holds, or later if fn is so slow that the log is
// trimmed past it. fn runs on the caller's goroutine with no lock held.
func (s *Store) Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(Event) error) error {
	s.mu.RLock()
	last, first, closed := s.lastIndex, s.firstIndex, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if fromNow {
		since = last
	}
	if since+1 < first {
		return fmt.Errorf("%w: changes after %d asked, the log starts at %d", ErrCompacted, since, first)
	}
	cursor := since
	for {
		// Take the channel before reading lastIndex: a commit after this
		// point closes the channel we wait on, so none is missed.
		s.mu.RLock()
		notify, last := s.notify, s.lastIndex
		s.mu.RUnlock()
		for cursor < last {
			if err := ctx.Err(); err != nil {
				return err
			}
			evs, err := s.readLog(cursor, last)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				cursor = ev.Index
				if strings.HasPrefix(ev.Key, prefix) {
					if err := fn(ev); err != nil {
						return err
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		case <-notify:
		}
	}
}

// readLog returns the events after cursor, up to last, at most
// watchChunk: from the file, then from the pending sets.
func (s *Store) readLog(cursor, last uint64) ([]Event, error) {
	var evs, pend []Event
	var first uint64
	err := s.read(func() bool {
		pend, first = s.pendingEvents(cursor, last, watchChunk), s.firstIndex
		return true
	}, func(tx *bolt.Tx) error {
		if cursor+1 < first { // trimmed, though perhaps not yet from the file
			return fmt.Errorf("%w: the log was trimmed past index %d while watching", ErrCompacted, cursor)
		}
		c := tx.Bucket(bucketChanges).Cursor()
		var fileLast uint64
		if k, _ := c.Last(); len(k) == 8 {
			fileLast = binary.BigEndian.Uint64(k)
		}
		if cursor < fileLast {
			k, v := c.Seek(u64(cursor + 1))
			if k == nil || !bytes.Equal(k, u64(cursor+1)) {
				return fmt.Errorf("%w: the log was trimmed past index %d while watching", ErrCompacted, cursor)
			}
			for ; k != nil && len(evs) < watchChunk; k, v = c.Next() {
				ev, err := decodeEvent(k, v)
				if err != nil {
					return err
				}
				if ev.Index > last {
					break
				}
				evs = append(evs, ev)
			}
		}
		next := max(cursor, fileLast) + 1
		if len(evs) > 0 {
			next = evs[len(evs)-1].Index + 1
		}
		for _, ev := range pend {
			if ev.Index == next && len(evs) < watchChunk {
				evs = append(evs, ev)
				next++
			}
		}
		return nil
	})
	return evs, err
}

func decodeEvent(k, v []byte) (Event, error) {
	if len(k) != 8 {
		return Event{}, fmt.Errorf("%w: change-log key %x", ErrCorrupt, k)
	}
	w, ok := parseEvent(v)
	if !ok {
		if err := decMode.Unmarshal(v, &w); err != nil {
			return Event{}, fmt.Errorf("%w: change %x: %v", ErrCorrupt, k, err)
		}
	}
	return Event{Index: binary.BigEndian.Uint64(k), Op: w.Op, Key: w.Key, Version: w.Version, Origin: w.Origin}, nil
}
