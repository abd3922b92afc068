package seal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"sync/atomic"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

const cluster = "test-cluster"

const epoch1 = 1_700_000_000_000

var (
	nodeA = store.NodeID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xa0}
	nodeB = store.NodeID{0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xb0}
	nodeC = store.NodeID{0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xc0}
)

// key returns a fixed key named name, so seeds and failures reproduce.
func key(name string) []byte {
	k := sha256.Sum256([]byte("test key " + name))
	return k[:]
}

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// ring returns a keyring of keys, the first primary.
func ring(t testing.TB, keys ...[]byte) *seal.Keyring {
	t.Helper()
	r, err := seal.NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// record is a plausible record; value pads it to the size wanted.
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

// update is a ~200-byte UPDATE body, the common datagram.
func update() wire.Message {
	return wire.NewUpdate(record("some/key", bytes.Repeat([]byte("v"), 64)))
}

// sender encodes frames as a node does: one epoch, a counter from 1.
type sender struct {
	id      store.NodeID
	epoch   uint64
	counter uint64
	s       wire.Sealer
}

func newSender(id store.NodeID, epoch uint64, s wire.Sealer) *sender {
	return &sender{id: id, epoch: epoch, s: s}
}

func (s *sender) frame(t testing.TB, msg wire.Message) []byte {
	t.Helper()
	s.counter++
	b, err := wire.Encode(wire.Header{Sender: s.id, Epoch: s.epoch, Counter: s.counter}, msg, s.s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frames returns n frames of msg.
func (s *sender) frames(t testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = s.frame(t, &wire.Query{ID: uint64(i), Key: "k"})
	}
	return out
}

// decode decodes a copy of b, as a receiver given its own buffer does.
func decode(b []byte, s wire.Sealer) (wire.Header, wire.Message, error) {
	return wire.Decode(bytes.Clone(b), s)
}

// countOpens counts AEAD attempts on the datagram path during the test.
func countOpens(t testing.TB) *atomic.Int64 {
	var n atomic.Int64
	seal.SetOpenHook(t, func() { n.Add(1) })
	return &n
}
