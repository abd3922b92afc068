package daemon

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// FuzzImportLine feeds arbitrary import lines through the import path
// (JSON, fromRPC, store.Apply) into a real store that already holds a key
// this node wrote. Whatever the line, the store stays consistent, the
// clock moves by at most store.MaxClockJump, and the node's next write of
// any key it touched dominates what the store held: an import can never
// outrank a later acknowledged write (docs/ARCHITECTURE.md, "Hostile
// records").
func FuzzImportLine(f *testing.F) {
	for _, seed := range []string{
		// The two lines that once broke a cluster; "SELF" becomes the node id.
		`{"key":"p","value":"x","version":4611686018427387903,"origin":"0123456789abcdef0123456789abcdef","vv":{"0123456789abcdef0123456789abcdef":4611686018427387903}}`,
		`{"key":"k","value":"i","version":5,"origin":"0123456789abcdef0123456789abcdef","vv":{"SELF":1000000000,"0123456789abcdef0123456789abcdef":5}}`,
		`{"key":"k","value":"i","version":1000000000,"origin":"0123456789abcdef0123456789abcdef","vv":{"SELF":1000000000}}`,
		`{"key":"k","deleted":true,"version":7,"origin":"SELF","vv":{"SELF":7},"lww":{"lamport":9,"origin":"SELF"}}`,
		`{"key":"a/b","value":"aGk=","encoding":"base64","version":3,"origin":"SELF","vv":{"SELF":3},"at":-1,"fallback":true}`,
		`{"key":"","version":1}`,
		`not json`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	st, err := store.Open(filepath.Join(dir, "store.db"), store.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := st.Check(); err != nil {
			f.Errorf("check: %v", err)
		}
		st.Close()
	})
	self := st.NodeID().String()
	if _, err := st.Set(f.Context(), "k", []byte("mine"), nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		line = []byte(strings.ReplaceAll(string(line), "SELF", self))
		var r rpc.Record
		if json.Unmarshal(line, &r) != nil {
			return
		}
		rec, err := fromRPC(r)
		if err != nil {
			return
		}
		before := st.Lamport()
		res, err := st.Apply(t.Context(), rec)
		if l := st.Lamport(); l > before+store.MaxClockJump {
			t.Fatalf("clock moved from %d to %d (err %v)", before, l, err)
		}
		if err != nil {
			if !errors.Is(err, store.ErrBadRecord) && !errors.Is(err, store.ErrBadKey) && !errors.Is(err, store.ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		held := res.Record
		if res.Outcome == store.Dropped {
			return
		}
		next, err := st.Set(t.Context(), rec.Key, []byte("after"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if next.VV.Compare(held.VV) != store.Newer {
			t.Fatalf("write %v does not dominate the stored %v", next.VV, held.VV)
		}
	})
}
