package store_test

import (
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/store"
)

// openTest opens a fresh store in a temporary directory. fsync is off
// unless a test asks for it; every store opened is checked and closed when
// the test ends.
func openTest(t testing.TB, opts ...func(*store.Options)) *store.Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "data", "store.db"), opts...)
}

// openAt opens the store at path like openTest.
func openAt(t testing.TB, path string, opts ...func(*store.Options)) *store.Store {
	t.Helper()
	o := store.Options{NoSync: true}
	for _, f := range opts {
		f(&o)
	}
	s, err := store.Open(path, o)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { checkClose(t, s) })
	return s
}

// checkClose runs Check and closes s; a store the test already closed is
// fine (reopen checks before closing).
func checkClose(t testing.TB, s *store.Store) {
	t.Helper()
	if err := s.Check(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("check %s: %v", s.Path(), err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close %s: %v", s.Path(), err)
	}
}

// reopen checks and closes s and opens its file again.
func reopen(t testing.TB, s *store.Store, opts ...func(*store.Options)) *store.Store {
	t.Helper()
	checkClose(t, s)
	return openAt(t, s.Path(), opts...)
}

func durable(o *store.Options) { o.NoSync = false }

func mustSet(t testing.TB, s *store.Store, key, value string) store.Record {
	t.Helper()
	rec, err := s.Set(t.Context(), key, []byte(value), nil)
	if err != nil {
		t.Fatalf("set %q: %v", key, err)
	}
	return rec
}

func mustDelete(t testing.TB, s *store.Store, key string) store.Record {
	t.Helper()
	rec, err := s.Delete(t.Context(), key, nil)
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return rec
}

func mustGet(t testing.TB, s *store.Store, key string) (store.Record, bool) {
	t.Helper()
	rec, found, err := s.Get(key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return rec, found
}

// id returns a node id whose bytes are all b: readable in failures.
func id(b byte) store.NodeID {
	var n store.NodeID
	for i := range n {
		n[i] = b
	}
	return n
}

// forgeFile changes the bbolt file at path (created when missing; no store
// may have it open) in one transaction, as a crashed process, another
// version or another program could have left it.
func forgeFile(t testing.TB, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(fn), db.Close()); err != nil {
		t.Fatal(err)
	}
}
