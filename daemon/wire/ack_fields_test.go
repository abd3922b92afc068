package wire_test

import (
	"bytes"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestAckFields: the fields that bound a writer's fan-in (an UPDATE's
// AckRequest, an ACK's More) round-trip, leave the encoding of messages
// that do not set them as it was (older peers read them as before), are
// counted exactly by AckRequestSize, and are checked both ways.
func TestAckFields(t *testing.T) {
	s := wire.Plaintext(cluster)
	msgs := messages()
	plain := mustEncode(t, hdrA, msgs["update"], s)
	if again := mustEncode(t, hdrA, wire.NewUpdate(msgs["update"].(*wire.Update).Record), s); !bytes.Equal(again, plain) {
		t.Error("an UPDATE without an AckRequest encodes differently")
	}
	rec := msgs["update"].(*wire.Update).Record
	if got, want := len(plain), wire.UpdateSize(&rec, s); got != want {
		t.Errorf("UpdateSize = %d, frame is %d", want, got)
	}
	for _, name := range []string{"update-no-ack", "update-ack-from"} {
		t.Run(name, func(t *testing.T) {
			u := msgs[name].(*wire.Update)
			b := mustEncode(t, hdrA, u, s)
			if got, want := len(b), len(plain)+wire.AckRequestSize(u.AckRequest); got != want {
				t.Errorf("frame is %d bytes, UpdateSize+AckRequestSize say %d", got, want)
			}
		})
	}

	for _, tc := range []struct {
		name string
		r    wire.AckRequest
		id   store.NodeID
		want bool
	}{
		{"everyone", wire.AckRequest{}, nodeA, true},
		{"nobody", wire.AckRequest{NoAck: true}, nodeA, false},
		{"listed", wire.AckRequest{AckFrom: []store.NodeID{nodeB, nodeA}}, nodeA, true},
		{"not listed", wire.AckRequest{AckFrom: []store.NodeID{nodeB}}, nodeA, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Wants(tc.id); got != tc.want {
				t.Errorf("Wants = %v, want %v", got, tc.want)
			}
		})
	}

	bad := map[string]wire.Message{
		"both":     &wire.Update{Record: rec, Hash: rec.Hash(), AckRequest: wire.AckRequest{NoAck: true, AckFrom: []store.NodeID{nodeB}}},
		"too many": &wire.Update{Record: rec, Hash: rec.Hash(), AckRequest: wire.AckRequest{AckFrom: make([]store.NodeID, wire.MaxAckFrom+1)}},
		"announce both": &wire.Announce{KeyHash: store.KeyHash("k"), Key: "k", Holder: "127.0.0.1:1",
			NoAck: true, AckFrom: []store.NodeID{nodeB}},
	}
	for name, m := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := wire.Encode(hdrA, m, s); err == nil {
				t.Error("Encode accepted it")
			}
		})
	}
}
