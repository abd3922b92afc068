package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// FuzzDecode: whatever the bytes, Decode returns a message or an error
// with a drop reason, never panics; and what it accepts, Encode accepts
// and encodes to a fixed point (decoding fills in absent fields, so the
// first re-encoding may differ from the input; the second may not).
func FuzzDecode(f *testing.F) {
	s := wire.Plaintext(cluster)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, m, err := wire.Decode(bytes.Clone(b), s)
		if err != nil {
			if m != nil || wire.Reason(err) == "other" {
				t.Fatalf("Decode = %#v, %v (reason %q)", m, err, wire.Reason(err))
			}
			return
		}
		b2, err := wire.Encode(h, m, s)
		if err != nil {
			t.Fatalf("Encode refuses what Decode accepted: %v", err)
		}
		h2, m2, err := wire.Decode(b2, s)
		if err != nil || h2 != h {
			t.Fatalf("re-encoded frame: %+v, %v", h2, err)
		}
		if m2.Type() != m.Type() {
			t.Fatalf("type %s became %s", m.Type(), m2.Type())
		}
		b3, err := wire.Encode(h2, m2, s)
		if err != nil || !bytes.Equal(b3, b2) {
			t.Fatalf("encoding is not a fixed point:\n%x\n%x (%v)", b2, b3, err)
		}
	})
}

// FuzzFastDecode: whatever the body of an UPDATE or ACK frame, the direct
// codec (fastcodec.go) and the cbor package agree: both refuse it with the
// same error, or both decode the same message, which both encode to the
// same bytes. The input is the body after the header, so the fuzzer spends
// its mutations there.
func FuzzFastDecode(f *testing.F) {
	s := wire.Plaintext(cluster)
	f.Fuzz(func(t *testing.T, body []byte) {
		m := sameDecode(t, s, frame(body...))
		if m == nil {
			return
		}
		sameEncode(t, s, m)
	})
}

// FuzzReadFrame: ReadFrame returns a frame no longer than max that
// WriteFrame writes back as the bytes it read, or an error saying why.
func FuzzReadFrame(f *testing.F) {
	const max = 1 << 16
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := wire.ReadFrame(bytes.NewReader(in), max)
		if err != nil {
			if !errors.Is(err, wire.ErrTooLarge) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("ReadFrame: %v", err)
			}
			return
		}
		if len(b) > max {
			t.Fatalf("%d bytes over max %d", len(b), max)
		}
		var out bytes.Buffer
		if err := wire.WriteFrame(&out, b); err != nil || !bytes.Equal(out.Bytes(), in[:out.Len()]) {
			t.Fatalf("WriteFrame = %x, %v; read from %x", out.Bytes(), err, in)
		}
	})
}

// seeds returns the seed corpus of each fuzz target: a valid frame of
// every message, and mutations reaching each rejection.
func seeds(t *testing.T) map[string]map[string][]byte {
	s := wire.Plaintext(cluster)
	dec := map[string][]byte{}
	msgs := messages()
	for name, m := range msgs {
		dec[name] = mustEncode(t, hdrA, m, s)
	}
	update := dec["update"]
	mutate := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	dec["x-update-cut"] = update[:len(update)-5]
	dec["x-header-only"] = update[:wire.HeaderSize]
	dec["x-magic"] = mutate(update, 0, 'c')
	dec["x-version"] = mutate(update, 2, 2)
	dec["x-sealed"] = mutate(update, 3, byte(wire.FlagSealed))
	dec["x-other-cluster"] = mustEncode(t, hdrA, msgs["query"], wire.Plaintext("other"))
	dec["x-type"] = mutate(dec["query"], wire.HeaderSize, 99)
	dec["x-update-as-answer"] = mutate(update, wire.HeaderSize, byte(wire.TypeAnswer))
	dec["x-unknown-field"] = frame(body(t, wire.TypeQuery, map[int]any{1: 5, 2: "k", 42: []any{"future"}})...)
	dec["x-huge-string"] = frame(byte(wire.TypeUpdate), 0xa1, 0x01, 0xa1, 0x02, 0x5a, 0xff, 0xff, 0xff, 0xff, 0)
	dec["x-huge-array"] = frame(byte(wire.TypeSyncRecords), 0xa1, 0x01, 0x9a, 0x7f, 0xff, 0xff, 0xff, 0xa0)
	dec["x-bad-hash"] = frame(body(t, wire.TypeUpdate, &wire.Update{Record: record("k", nil), Hash: store.Hash{1}})...)

	framed := func(bs ...[]byte) []byte {
		var out bytes.Buffer
		for _, b := range bs {
			if err := wire.WriteFrame(&out, b); err != nil {
				t.Fatal(err)
			}
		}
		return out.Bytes()
	}
	read := map[string][]byte{
		"empty-frame": framed(nil),
		"hello":       framed(dec["hello"]),
		"two-frames":  framed(dec["fetch"], dec["fetch-reply"]),
		"cut-body":    framed(update)[:20],
		"cut-prefix":  {0, 0, 1},
		"over-max":    binary.BigEndian.AppendUint32(nil, 1<<16+1),
		"huge":        {0xff, 0xff, 0xff, 0xff, 1, 2, 3},
	}
	fast := map[string][]byte{}
	for name, b := range dec {
		if (strings.HasPrefix(name, "update") || strings.HasPrefix(name, "ack")) && !strings.HasPrefix(name, "x-") {
			fast[name] = b[wire.HeaderSize:]
		}
	}
	ack := fast["ack"]
	fast["x-ack-unknown-field"] = append(mutate(ack, 1, ack[1]+1), 9, 0xf6)
	fast["x-ack-by-hand"] = body(t, wire.TypeAck, map[int]any{1: "k", 2: nodeB, 3: uint64(1 << 40), 4: nodeA})
	fast["x-update-empty-more"] = append(mutate(fast["update"], 1, fast["update"][1]+1), 6, 0x80)
	fast["x-update-null-ack-from"] = append(mutate(fast["update"], 1, fast["update"][1]+1), 4, 0xf6)
	return map[string]map[string][]byte{"FuzzDecode": dec, "FuzzReadFrame": read, "FuzzFastDecode": fast}
}

// TestFuzzCorpus keeps testdata/fuzz in step with the encoding: a change
// of the wire format shows here, and -update-corpus rewrites the seeds.
func TestFuzzCorpus(t *testing.T) {
	for target, corpus := range seeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range corpus {
				if !yield(n) {
					return
				}
			}
		})
		for _, name := range names {
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", corpus[name])
			path := filepath.Join(dir, name)
			if *updateCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): run go test -run TestFuzzCorpus -update-corpus", path, err)
			}
		}
	}
}

// TestSeedsDecodeAsNamed: the valid seeds decode to the table's messages,
// so the corpus starts the fuzzer from every message type.
func TestSeedsDecodeAsNamed(t *testing.T) {
	s := wire.Plaintext(cluster)
	msgs := messages()
	for name, b := range seeds(t)["FuzzDecode"] {
		_, m, err := wire.Decode(bytes.Clone(b), s)
		want, valid := msgs[name]
		switch {
		case valid && (err != nil || !reflect.DeepEqual(received(t, m), want)):
			t.Errorf("%s: Decode = %#v, %v", name, m, err)
		case !valid && name != "x-unknown-field" && err == nil:
			t.Errorf("%s: a mutation decoded: %#v", name, m)
		}
	}
}
