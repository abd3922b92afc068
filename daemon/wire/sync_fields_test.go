package wire_test

import (
	"bytes"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
)

// TestSyncFields: the fields the sync protocol added (Hello.Syncing,
// SyncDone.Refused) round-trip, and leave the encoding of messages that
// do not set them as it was, so older peers and the corpus still agree.
func TestSyncFields(t *testing.T) {
	s := wire.Plaintext(cluster)
	hello := messages()["hello"].(*wire.Hello)
	plain := mustEncode(t, hdrA, hello, s)
	syncing := *hello
	syncing.Syncing = true
	for _, m := range []wire.Message{&syncing, &wire.SyncDone{Refused: "busy"}} {
		_, got, err := wire.Decode(mustEncode(t, hdrA, m, s), s)
		if err != nil {
			t.Fatalf("%s: %v", m.Type(), err)
		}
		switch g := got.(type) {
		case *wire.Hello:
			if !g.Syncing {
				t.Error("Hello.Syncing lost")
			}
		case *wire.SyncDone:
			if g.Refused != "busy" {
				t.Errorf("SyncDone.Refused = %q", g.Refused)
			}
		}
	}
	hello.Syncing = false
	if again := mustEncode(t, hdrA, hello, s); !bytes.Equal(again, plain) {
		t.Error("a HELLO without Syncing encodes differently")
	}
	done := mustEncode(t, hdrA, &wire.SyncDone{}, s)
	if body := done[wire.HeaderSize:]; !bytes.Equal(body, []byte{byte(wire.TypeSyncDone), 0xa0}) {
		t.Errorf("SYNC_DONE without Refused is %x, want an empty map", body)
	}
}
