package store

import (
	"sync"
	"time"
)

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

// CountInBackground makes Open count every file without a current digest
// snapshot in the background, however small (counting.go).
func CountInBackground(o *Options) { o.countInline = -1 }

// HoldCount sets CountHold.
func HoldCount(hold <-chan struct{}) func(*Options) {
	return func(o *Options) { o.CountHold = hold }
}

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

// SetFreelistSync makes bbolt write its freelist in every commit (on) or
// not, for a benchmark's A/B; call it while nothing commits.
func (s *Store) SetFreelistSync(on bool) { s.db.NoFreelistSync = !on }

// FreePages is bbolt's count of free pages, for a benchmark.
func (s *Store) FreePages() int { return s.db.Stats().FreePageN }

// PageWrites is how many writes bbolt's commits made so far, for a
// benchmark.
func (s *Store) PageWrites() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }

// CompanyWaits is how many batches waited for company (company.go).
func (s *Store) CompanyWaits() uint64 { return s.company.waits.Load() }

// SetCompany makes the recent batches n requests each, committed in took,
// so that the next batch smaller than n waits for company.
func (s *Store) SetCompany(n int, took time.Duration) {
	for range companyWindow {
		s.company.committed(n, took)
	}
}

// LogRoom reports whether a receive loop may commit received records
// itself (commitHere): no flush due or running.
func (s *Store) LogRoom() bool { return s.logRoom() }
