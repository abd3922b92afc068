package cluster

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// TestOwnWritesDeletes: a rejoin re-applies the stale node's deletes
// however old — an expired tombstone, or one purged into the purge log —
// but not a purged delete of a key written again since.
func TestOwnWritesDeletes(t *testing.T) {
	var ms atomic.Int64
	ms.Store(1_700_000_000_000)
	now := func() time.Time { return time.UnixMilli(ms.Load()) }
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{
		NoSync: true, Now: now, TombstoneTTL: time.Hour, PurgeLogTTL: 10 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	cutoff := now()
	for _, k := range []string{"purged", "rewritten"} {
		if _, err := st.Delete(ctx, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	ms.Add(time.Hour.Milliseconds())
	if _, err := st.Purge(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Set(ctx, "rewritten", []byte("again"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, "expired", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Set(ctx, "value", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	ms.Add(time.Hour.Milliseconds()) // "expired" expires; the purger has not run
	var got []string
	err = OwnWrites(st, cutoff, func(r store.Record) error {
		got = append(got, fmt.Sprintf("%s:%v", r.Key, r.Deleted))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[expired:true rewritten:false value:false purged:true]"; fmt.Sprint(got) != want {
		t.Fatalf("OwnWrites = %v, want %s", got, want)
	}
}
