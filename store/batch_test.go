package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// ApplyBatch gives each record the outcome Apply would give it applied in
// the same order, and leaves the same store: newer, older, concurrent
// (resolved outside the commit or by it), repeated keys within a batch,
// invalid records, and more records than one commit takes.
func TestApplyBatch(t *testing.T) {
	rng := testseed.Rand(t)
	recs := receivedRecords(rng, 2500, 400)
	one := openTest(t, func(o *store.Options) { o.Resolver = union })
	batch := openTest(t, func(o *store.Options) { o.Resolver = union })
	var want []store.ApplyResult
	var wantErr []error
	for _, r := range recs {
		res, err := one.Apply(t.Context(), r)
		want, wantErr = append(want, res), append(wantErr, err)
	}
	var got []store.ApplyResult
	var gotErr []error
	for len(recs) > 0 { // uneven slices: a frame's worth, then more than maxBatch
		n := min(len(recs), 1+rng.IntN(1500))
		res, errs, err := batch.ApplyBatch(t.Context(), recs[:n])
		if err != nil {
			t.Fatal(err)
		}
		got, gotErr = append(got, res...), append(gotErr, errs...)
		recs = recs[n:]
	}
	for i := range want {
		if !errors.Is(gotErr[i], store.ErrBadRecord) && gotErr[i] != nil || (wantErr[i] == nil) != (gotErr[i] == nil) {
			t.Fatalf("record %d: error %v, Apply's %v", i, gotErr[i], wantErr[i])
		}
		if got[i].Outcome != want[i].Outcome || got[i].Record.Hash() != want[i].Record.Hash() {
			t.Fatalf("record %d: %v %+v, Apply gave %v %+v", i, got[i].Outcome, got[i].Record, want[i].Outcome, want[i].Record)
		}
	}
	if one.Root() != batch.Root() || one.LastIndex() != batch.LastIndex() || one.Keys() != batch.Keys() || one.Lamport() != batch.Lamport() {
		t.Errorf("stores differ: root %x/%x, last index %d/%d, keys %d/%d, lamport %d/%d", one.Root(), batch.Root(),
			one.LastIndex(), batch.LastIndex(), one.Keys(), batch.Keys(), one.Lamport(), batch.Lamport())
	}
	batch = reopen(t, batch, func(o *store.Options) { o.Resolver = union })
	if one.Root() != batch.Root() {
		t.Error("the batch store's root changed when reopened")
	}
}

func TestApplyBatchClosed(t *testing.T) {
	s := openTest(t)
	checkClose(t, s)
	_, errs, err := s.ApplyBatch(t.Context(), []store.Record{write("k", "v", 1, 1, nil)})
	if !errors.Is(err, store.ErrClosed) || !errors.Is(errs[0], store.ErrClosed) {
		t.Errorf("ApplyBatch on a closed store: %v, %v", err, errs)
	}
}

// receivedRecords is n records as peers send them, over keys keys: from
// three origins, half with a vector naming another, concurrent or not with
// what is stored, and one in a hundred invalid (lamport 0, refused alone).
func receivedRecords(rng *rand.Rand, n, keys int) []store.Record {
	var recs []store.Record
	for i := range n {
		key := fmt.Sprintf("k/%03d", rng.IntN(keys))
		var vv store.VV
		if rng.IntN(2) == 0 {
			vv = store.VV{id(byte(1 + rng.IntN(3))): uint64(1 + rng.IntN(50))}
		}
		rec := write(key, fmt.Sprint("v", i), byte(1+rng.IntN(3)), uint64(1+rng.IntN(60)), vv)
		if rng.IntN(100) == 0 {
			rec.Lamport = 0
		}
		recs = append(recs, rec)
	}
	return recs
}
