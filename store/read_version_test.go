package store_test

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// TestPeekVersion: PeekVersion finds what Peek finds — the same record
// but its value, with Peek's Left — and the record's hash and encoded
// size, for records pending and flushed, with and without a TTL (live,
// past their deadline, past the tombstone TTL), tombstones (live and
// expired) and ephemeral records, over a clock that moves.
func TestPeekVersion(t *testing.T) {
	rng := testseed.Rand(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := openTest(t, func(o *store.Options) { o.Now, o.TombstoneTTL = clock, 10*time.Second })
	if _, err := s.NextEpoch(uint64(clock().UnixMilli())); err != nil {
		t.Fatal(err)
	}
	const keys = 40
	check := func(t *testing.T, stage string) {
		t.Helper()
		for i := range keys + 1 { // one key never written
			key := fmt.Sprintf("k/%02d", i)
			v, vfound, verr := s.PeekVersion(key)
			rec, found, err := s.Peek(key)
			if verr != nil || err != nil {
				t.Fatalf("%s: %s: PeekVersion: %v, Peek: %v", stage, key, verr, err)
			}
			if vfound != found {
				t.Fatalf("%s: %s: PeekVersion found %v, Peek %v (%+v)", stage, key, vfound, found, rec)
			}
			if !found {
				continue
			}
			b, err := rec.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			if v.Hash != rec.Hash() || v.Size != len(b) {
				t.Errorf("%s: %s: hash %x size %d, want %x %d", stage, key, v.Hash, v.Size, rec.Hash(), len(b))
			}
			if v.Record.Value != nil {
				t.Errorf("%s: %s: PeekVersion returned the value", stage, key)
			}
			want := rec
			want.Value = nil
			if !reflect.DeepEqual(v.Record, want) {
				t.Errorf("%s: %s: PeekVersion\n%+v\nPeek without the value\n%+v", stage, key, v.Record, want)
			}
		}
	}
	value := func() []byte { return make([]byte, rng.IntN(300)) }
	for round := range 12 {
		for range 30 {
			key := fmt.Sprintf("k/%02d", rng.IntN(keys))
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = s.Set(t.Context(), key, value(), nil)
			case 1:
				_, err = s.SetTTL(t.Context(), key, value(), nil, time.Duration(1+rng.IntN(5))*time.Second)
			case 2:
				_, err = s.Delete(t.Context(), key, nil)
			case 3:
				_, err = s.SetWith(t.Context(), key, value(), store.SetOptions{Ephemeral: true})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		check(t, fmt.Sprintf("round %d, pending", round))
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		check(t, fmt.Sprintf("round %d, flushed", round))
		// From a second to past the tombstone TTL: TTL records reach their
		// deadline, then expire with the tombstones.
		now.Add(int64(time.Duration(rng.IntN(4000)) * time.Millisecond))
		if round%4 == 3 {
			now.Add(int64(11 * time.Second))
		}
		if round == 6 { // a new boot: the ephemeral records of the last are gone
			if _, err := s.NextEpoch(uint64(clock().UnixMilli())); err != nil {
				t.Fatal(err)
			}
		}
		check(t, fmt.Sprintf("round %d, later", round))
	}
}
