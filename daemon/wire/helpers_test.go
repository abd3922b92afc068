package wire_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

const cluster = "test-cluster"

var (
	nodeA = store.NodeID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xa0}
	nodeB = store.NodeID{0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xb0}
	// hdrA is a header as the protocol fills it: the sealer does the rest.
	hdrA = wire.Header{Sender: nodeA, Epoch: 1_700_000_000_000, Counter: 42}
)

// record returns a plausible record of key written by nodeA.
func record(key string, value []byte) store.Record {
	return store.Record{
		Key:     key,
		Value:   value,
		VV:      store.VV{nodeA: 7, nodeB: 3},
		Lamport: 7,
		Origin:  nodeA,
		LWW:     store.Stamp{Lamport: 7, Origin: nodeA},
		At:      1_700_000_123_456,
	}
}

func tombstone(key string) store.Record {
	r := record(key, nil)
	r.Deleted = true
	r.Value = []byte{} // what a decoded tombstone holds
	return r
}

// digests returns a level of the digest tree with recognisable contents.
func digests(seed byte) wire.Digests {
	var d wire.Digests
	for i := range d {
		d[i][0], d[i][1], d[i][15] = seed, byte(i), 0xee
	}
	return d
}

// keyEntry returns an entry of key as SyncKeys lists it.
func keyEntry(key string, r store.Record) wire.KeyEntry {
	return wire.KeyEntry{KeyHash: store.KeyHash(key), Hash: r.Hash()}
}

// messages is one valid message of each type (several of some), the
// table every round-trip test and the fuzz corpus start from.
func messages() map[string]wire.Message {
	small := record("config/db/host", []byte("10.0.0.7"))
	dead := tombstone("config/old")
	smallHash := small.Hash()
	leafKey := "a/key"
	leaf := store.KeyHash(leafKey).Leaf()
	return map[string]wire.Message{
		"hello": &wire.Hello{
			ID: nodeA, Name: "alpha", Epoch: hdrA.Epoch, Addr: "127.0.0.1:40001",
			Proto: wire.Proto, Lamport: 99, Keys: 12, Root: [32]byte{1, 2, 3, 31: 0xff},
			HookHash: "sha256:abcd", TombstoneTTL: 7 * 24 * 3600 * 1000,
		},
		"bye":           &wire.Bye{ID: nodeA, Epoch: hdrA.Epoch},
		"update":        wire.NewUpdate(small),
		"update-delete": wire.NewUpdate(dead),
		"announce": &wire.Announce{
			KeyHash: store.KeyHash("big/blob"), Key: "big/blob", Origin: nodeA,
			Lamport: 8, Hash: store.Hash{9, 9, 9}, Holder: "127.0.0.1:40001",
		},
		"ack": &wire.Ack{Key: "config/db/host", Origin: nodeB, Lamport: 5, From: nodeA},
		"ack-more": &wire.Ack{Key: "config/db/host", Origin: nodeB, Lamport: 5, From: nodeA, More: []wire.AckEntry{
			{Key: "config/db/port", Origin: nodeB, Lamport: 6}, {Key: "x", Origin: nodeA, Lamport: 1 << 40},
		}},
		"update-no-ack":   &wire.Update{Record: small, Hash: small.Hash(), AckRequest: wire.AckRequest{NoAck: true}},
		"update-ack-from": &wire.Update{Record: small, Hash: small.Hash(), AckRequest: wire.AckRequest{AckFrom: []store.NodeID{nodeB, nodeA}}},
		"update-more": &wire.Update{Record: small, Hash: small.Hash(), AckRequest: wire.AckRequest{NoAck: true},
			More: []wire.Update{
				{Record: dead, Hash: dead.Hash(), AckRequest: wire.AckRequest{AckFrom: []store.NodeID{nodeB}}},
				{Record: small, Hash: small.Hash()},
			}},
		"announce-ack-from": &wire.Announce{
			KeyHash: store.KeyHash("big/blob"), Key: "big/blob", Origin: nodeA,
			Lamport: 8, Hash: store.Hash{9, 9, 9}, Holder: "127.0.0.1:40001", AckFrom: []store.NodeID{nodeB},
		},
		"announce-no-ack": &wire.Announce{
			KeyHash: store.KeyHash("big/blob"), Key: "big/blob", Origin: nodeA,
			Lamport: 8, Hash: store.Hash{9, 9, 9}, Holder: "127.0.0.1:40001", NoAck: true,
		},
		"query":          &wire.Query{ID: 1234, Key: "config/db/host"},
		"query-have":     &wire.Query{ID: 1234, Key: "config/db/host", HaveVV: small.VV, HaveHash: &smallHash},
		"answer-missing": &wire.Answer{ID: 1234, Hash: store.Hash{}},
		"answer-version": &wire.Answer{ID: 1234, Found: true, Lamport: 7, VV: store.VV{nodeA: 7, nodeB: 3}, Hash: small.Hash()},
		"answer-record": &wire.Answer{
			ID: 1234, Found: true, Lamport: small.Lamport, VV: small.VV, Hash: small.Hash(), Record: &small,
		},
		"answer-tombstone": &wire.Answer{
			ID: 1, Found: true, Deleted: true, Lamport: dead.Lamport, VV: dead.VV, Hash: dead.Hash(), Record: &dead,
		},
		"fetch":             &wire.Fetch{Key: "big/blob"},
		"fetch-reply":       &wire.FetchReply{Found: true, Record: &small},
		"fetch-reply-none":  &wire.FetchReply{},
		"sync-top":          &wire.SyncTop{Tops: digests(1)},
		"sync-leaves":       &wire.SyncLeaves{Top: 200, Leaves: digests(2)},
		"sync-keys":         &wire.SyncKeys{Leaf: leaf, Entries: []wire.KeyEntry{keyEntry(leafKey, small)}},
		"sync-keys-empty":   &wire.SyncKeys{Leaf: 7, Entries: []wire.KeyEntry{}},
		"sync-records":      &wire.SyncRecords{Records: []store.Record{small, dead, record("x", bytes.Repeat([]byte{7}, 3000))}},
		"sync-records-none": &wire.SyncRecords{Records: []store.Record{}},
		"sync-done":         &wire.SyncDone{},
	}
}

func mustEncode(t testing.TB, h wire.Header, m wire.Message, s wire.Sealer) []byte {
	t.Helper()
	b, err := wire.Encode(h, m, s)
	if err != nil {
		t.Fatalf("Encode(%s): %v", m.Type(), err)
	}
	return b
}

// frame builds a frame by hand: hdrA's header for cluster, then body.
func frame(body ...byte) []byte {
	h := hdrA
	h.Version = wire.Version
	h.Cluster = wire.ClusterTag(cluster)
	b, _ := h.AppendBinary(nil)
	return append(b, body...)
}

// received checks what Decode adds to an UPDATE — each write's Raw, the
// record's canonical encoding that its hash was checked over — and
// returns m without it, to compare with the message encoded.
func received(t testing.TB, m wire.Message) wire.Message {
	t.Helper()
	u, ok := m.(*wire.Update)
	if !ok {
		return m
	}
	c := *u
	c.More = slices.Clone(u.More)
	for _, w := range append([]*wire.Update{&c}, pointers(c.More)...) {
		if want, _ := w.Record.MarshalCBOR(); !bytes.Equal(w.Raw, want) {
			t.Errorf("decoded %q with Raw %x, want its encoding %x", w.Record.Key, w.Raw, want)
		}
		w.Raw = nil
	}
	return &c
}

func pointers(us []wire.Update) []*wire.Update {
	out := make([]*wire.Update, len(us))
	for i := range us {
		out[i] = &us[i]
	}
	return out
}
