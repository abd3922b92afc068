package store

import (
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// SetChunk makes the loader's chunks n records, so that small tests write
// many bulk transactions.
func (l *Loader) SetChunk(n int) { l.chunk = n }

// Staged reports whether the file holds staged key-hash index entries
// (bulk.go).
func (s *Store) Staged() (bool, error) {
	var any bool
	err := s.read(nil, func(tx *bolt.Tx) error { any = tx.Bucket(bucketStaged) != nil; return nil })
	return any, err
}

// CrashCopy writes to dir the files a crash now would leave: the data
// file as of its last commit (a read transaction's copy) and the log,
// with commits held off meanwhile so that the two agree.
func (s *Store) CrashCopy(dir string) (string, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	path := filepath.Join(dir, filepath.Base(s.path))
	b, err := os.ReadFile(walPath(s.path))
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(walPath(path), b, 0o600); err != nil {
		return "", err
	}
	return path, s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
}
