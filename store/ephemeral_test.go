package store_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// TestEphemeral: an ephemeral record shows on its owner during the boot
// that wrote it and elsewhere while the liveness says that boot runs;
// after a restart the owner hides its old ones, lists them to delete, and
// a compare-and-set sees them as absent.
func TestEphemeral(t *testing.T) {
	s := openTest(t)
	if _, err := s.SetWith(t.Context(), "k", []byte("v"), store.SetOptions{Ephemeral: true}); !errors.Is(err, store.ErrBadTTL) {
		t.Fatalf("ephemeral before a boot epoch: %v", err)
	}
	epoch, err := s.NextEpoch(uint64(time.Now().UnixMilli()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetWith(t.Context(), "k", []byte("v"), store.SetOptions{Ephemeral: true, TTL: time.Minute}); !errors.Is(err, store.ErrBadTTL) {
		t.Fatalf("ephemeral with a ttl: %v", err)
	}
	own, err := s.SetWith(t.Context(), "hosts/me", []byte("v"), store.SetOptions{Ephemeral: true})
	if err != nil || own.Ephemeral != epoch {
		t.Fatalf("ephemeral write: %+v, %v", own, err)
	}
	var alive atomic.Bool
	alive.Store(true)
	s.SetLiveness(func(owner store.NodeID, e uint64) bool { return owner == id(2) && e == 77 && alive.Load() })
	peer := write("hosts/peer", "v", 2, 5, nil)
	peer.Ephemeral = 77
	mustApply(t, s, peer, store.Applied)
	if !visible(t, s, "hosts/me") || !visible(t, s, "hosts/peer") {
		t.Fatal("ephemeral records of live boots hidden")
	}
	alive.Store(false)
	if visible(t, s, "hosts/peer") {
		t.Fatal("the record of an owner that is away shows")
	}
	if _, found, _ := s.Peek("hosts/peer"); !found {
		t.Fatal("peers are not given an ephemeral record whose owner is away")
	}
	alive.Store(true)
	if !visible(t, s, "hosts/peer") {
		t.Fatal("the owner is back, its record is not")
	}
	bad := write("both", "v", 2, 6, nil)
	bad.Ephemeral, bad.TTL, bad.At = 77, 1000, time.Now().UnixMilli()
	if _, err := s.Apply(t.Context(), bad); !errors.Is(err, store.ErrBadRecord) {
		t.Fatalf("an ephemeral record with a ttl: %v", err)
	}

	s = reopen(t, s)
	if _, err := s.NextEpoch(uint64(time.Now().UnixMilli())); err != nil {
		t.Fatal(err)
	}
	s.SetLiveness(func(store.NodeID, uint64) bool { return false }) // the peer is away
	if visible(t, s, "hosts/me") {
		t.Fatal("an ephemeral record of an earlier boot shows on its owner")
	}
	var stale []string
	if err := s.StaleEphemeral(func(r store.Record) error { stale = append(stale, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0] != "hosts/me" {
		t.Fatalf("stale ephemeral records %v, want [hosts/me]", stale)
	}
	zero := uint64(0)
	del, err := s.Delete(t.Context(), "hosts/me", &zero)
	if err != nil || store.Compare(&del, &own) != store.Newer {
		t.Fatalf("deleting the stale record: %v", err)
	}
	if _, err := s.SetWith(t.Context(), "hosts/peer", []byte("mine"), store.SetOptions{IfVersion: &zero}); err != nil {
		t.Fatalf("if-version 0 on another's ephemeral key whose owner is away: %v", err)
	}
	if r, _, _ := s.Get("hosts/peer"); r.Ephemeral != 0 || string(r.Value) != "mine" {
		t.Fatalf("overwritten from another node, still ephemeral: %+v", r)
	}
}
