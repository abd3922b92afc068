package store_test

import (
	"fmt"
	"sync"
	"testing"
)

// Many concurrent durable writers share commits.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, durable)
	const goroutines, writes = 32, 20
	before := s.Stats()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range writes {
				if _, err := s.Set(t.Context(), fmt.Sprintf("g%d/%d", g, i), []byte("v"), nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	commits, reqs := st.Commits-before.Commits, st.Requests-before.Requests
	t.Logf("%d writes in %d commits", reqs, commits)
	if reqs != goroutines*writes || commits >= reqs {
		t.Fatalf("%d writes in %d commits: no grouping", reqs, commits)
	}
	if s.Keys() != goroutines*writes || s.LastIndex() != goroutines*writes {
		t.Fatalf("keys %d, last index %d", s.Keys(), s.LastIndex())
	}
}
