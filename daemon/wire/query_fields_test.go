package wire_test

import (
	"bytes"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestQueryHave: the version a fresh read's asker holds (QUERY fields 3
// and 4) round-trips; a QUERY without it encodes as it always did, so an
// older node reads it as before, and an older asker's QUERY reads as
// holding nothing; the two fields come together or not at all.
func TestQueryHave(t *testing.T) {
	s := wire.Plaintext(cluster)
	rec := record("config/db/host", []byte("10.0.0.7"))
	h := rec.Hash()

	old := frame(body(t, wire.TypeQuery, map[int]any{1: uint64(1234), 2: "config/db/host"})...)
	if got := mustEncode(t, hdrA, &wire.Query{ID: 1234, Key: "config/db/host"}, s); !bytes.Equal(got, old) {
		t.Errorf("a QUERY without a version encodes differently from the old format:\n got %x\nwant %x", got, old)
	}
	_, m, err := wire.Decode(old, s)
	if err != nil {
		t.Fatal(err)
	}
	if q := m.(*wire.Query); q.Holds() || q.NotNewer(rec.VV, h) {
		t.Errorf("an old QUERY reads as holding a version: %+v", q)
	}

	q := &wire.Query{ID: 9, Key: "config/db/host", HaveVV: rec.VV, HaveHash: &h}
	_, m, err = wire.Decode(mustEncode(t, hdrA, q, s), s)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*wire.Query)
	if !got.Holds() || *got.HaveHash != h || !got.HaveVV.Equal(rec.VV) {
		t.Errorf("round trip: %+v, want %+v", got, q)
	}

	for name, bad := range map[string]*wire.Query{
		"vv without hash": {ID: 1, Key: "k", HaveVV: rec.VV},
		"hash without vv": {ID: 1, Key: "k", HaveHash: &h},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := wire.Encode(hdrA, bad, s); err == nil {
				t.Error("Encode accepted it")
			}
			b := frame(body(t, wire.TypeQuery, bad)...)
			if _, _, err := wire.Decode(b, s); err == nil {
				t.Error("Decode accepted it")
			}
		})
	}
}

// TestQueryNotNewer: a node answers with its version only when the
// asker's version dominates or equals its own — never when its own is
// newer or concurrent, nor for equal vectors with another hash.
func TestQueryNotNewer(t *testing.T) {
	asker := record("k", []byte("v"))
	asker.VV = store.VV{nodeA: 7, nodeB: 3}
	ah := asker.Hash()
	q := &wire.Query{ID: 1, Key: "k", HaveVV: asker.VV, HaveHash: &ah}
	other := store.Hash{1}
	for _, tc := range []struct {
		name string
		vv   store.VV
		hash store.Hash
		want bool
	}{
		{"same version", store.VV{nodeA: 7, nodeB: 3}, ah, true},
		{"older", store.VV{nodeA: 6, nodeB: 3}, other, true},
		{"older, one writer fewer", store.VV{nodeA: 7}, other, true},
		{"newer", store.VV{nodeA: 8, nodeB: 3}, other, false},
		{"concurrent", store.VV{nodeA: 6, nodeB: 4}, other, false},
		{"equal vectors, other hash", store.VV{nodeA: 7, nodeB: 3}, other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := q.NotNewer(tc.vv, tc.hash); got != tc.want {
				t.Errorf("NotNewer = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestHelloInterval: a HELLO's heartbeat (field 13) round-trips, and a
// HELLO without it (an older node) reads as 0 and encodes as before.
func TestHelloInterval(t *testing.T) {
	s := wire.Plaintext(cluster)
	h := *messages()["hello"].(*wire.Hello)
	plain := mustEncode(t, hdrA, &h, s)
	h.Interval = 6250
	_, m, err := wire.Decode(mustEncode(t, hdrA, &h, s), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*wire.Hello).Interval; got != 6250 {
		t.Errorf("interval %d after a round trip, want 6250", got)
	}
	_, m, err = wire.Decode(plain, s)
	if err != nil || m.(*wire.Hello).Interval != 0 {
		t.Errorf("a HELLO without an interval: %+v, %v", m, err)
	}
}

// TestHelloWitnesses: a HELLO's witness count (field 14) round-trips, and
// a HELLO without it (an older node) reads as 0.
func TestHelloWitnesses(t *testing.T) {
	s := wire.Plaintext(cluster)
	h := *messages()["hello"].(*wire.Hello)
	plain := mustEncode(t, hdrA, &h, s)
	h.Witnesses = 3
	_, m, err := wire.Decode(mustEncode(t, hdrA, &h, s), s)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*wire.Hello).Witnesses; got != 3 {
		t.Errorf("witnesses %d after a round trip, want 3", got)
	}
	_, m, err = wire.Decode(plain, s)
	if err != nil || m.(*wire.Hello).Witnesses != 0 {
		t.Errorf("a HELLO without witnesses: %+v, %v", m, err)
	}
}
