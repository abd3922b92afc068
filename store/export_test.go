package store

import "sync"

// Internals the black-box tests need to forge files (a future format, a
// reservation written by a crashed process).
var (
	BucketMeta   = bucketMeta
	MetaFormat   = metaFormat
	MetaReserved = metaReserved
)

const LamportBlock = lamportBlock

// WALSize makes the write-ahead log's ring n bytes (whole blocks), so that
// tests wrap it and fill it.
func WALSize(n int64) func(*Options) { return func(o *Options) { o.walSize = n } }

// WALPath is the write-ahead log's file of the store at path.
func WALPath(path string) string { return walPath(path) }

// HoldFlushes keeps flushes from running until the returned function is
// called: what is committed meanwhile is only in the log, as after a crash.
// Calling release more than once is fine.
func (s *Store) HoldFlushes() (release func()) {
	s.pend.Lock()
	return sync.OnceFunc(s.pend.Unlock)
}

// Flush writes everything pending into the data file.
func (s *Store) Flush() error { return s.flushAll() }
