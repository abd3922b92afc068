package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
	"github.com/fxamacker/cbor/v2"
)

func TestRoundTrip(t *testing.T) {
	s := wire.Plaintext(cluster)
	for name, m := range messages() {
		t.Run(name, func(t *testing.T) {
			b := mustEncode(t, hdrA, m, s)
			h, got, err := wire.Decode(b, s)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := hdrA
			want.Version, want.Cluster = wire.Version, wire.ClusterTag(cluster)
			if h != want {
				t.Errorf("header = %+v, want %+v", h, want)
			}
			if !reflect.DeepEqual(received(t, got), m) {
				t.Errorf("message = %#v\nwant %#v", got, m)
			}
			if again := mustEncode(t, h, got, s); !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs:\n%x\n%x", again, b)
			}
		})
	}
}

func TestEveryTypeHasAName(t *testing.T) {
	seen := map[wire.MsgType]bool{}
	for name, m := range messages() {
		typ := m.Type()
		seen[typ] = true
		if s := typ.String(); s == "" || s[0] == 'M' {
			t.Errorf("%s: type %d has no name: %q", name, typ, s)
		}
		if typ.Stream() != (typ >= wire.TypeFetch) {
			t.Errorf("%s: Stream() = %v", typ, typ.Stream())
		}
	}
	if len(seen) != 14 {
		t.Errorf("the table covers %d message types, want 14", len(seen))
	}
	if s := wire.MsgType(99).String(); s != "MsgType(99)" {
		t.Errorf("MsgType(99).String() = %q", s)
	}
}

// TestHeaderLayout pins the bytes of the header: other implementations and
// the later encryption work depend on every offset.
func TestHeaderLayout(t *testing.T) {
	h := wire.Header{Sender: nodeB, Epoch: 0x0102030405060708, Counter: 0x1112131415161718}
	b := mustEncode(t, h, &wire.SyncDone{}, wire.Plaintext(cluster))
	tag := wire.ClusterTag(cluster)
	want := []byte{'C', 'K', wire.Version, 0, 0, 0, 0, 0}
	want = append(want, nodeB[:]...)
	want = binary.BigEndian.AppendUint64(want, h.Epoch)
	want = binary.BigEndian.AppendUint64(want, h.Counter)
	want = append(want, tag[:]...)
	want = append(want, byte(wire.TypeSyncDone), 0xa0) // empty map
	if !bytes.Equal(b, want) {
		t.Fatalf("frame\n%x, want\n%x", b, want)
	}
	if len(want)-2 != wire.HeaderSize {
		t.Fatalf("HeaderSize = %d, layout has %d", wire.HeaderSize, len(want)-2)
	}
	parsed, err := wire.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := parsed.AppendBinary(nil)
	if !bytes.Equal(again, b[:wire.HeaderSize]) {
		t.Errorf("AppendBinary(ParseHeader(b)) = %x, want %x", again, b[:wire.HeaderSize])
	}
}

func TestClusterTagAndKeyID(t *testing.T) {
	if wire.ClusterTag("a") == wire.ClusterTag("b") || wire.ClusterTag("") == ([8]byte{}) {
		t.Error("cluster tags do not tell names apart")
	}
	// SHA-256("ck-clusterdefault")[:8], and SHA-256("")[:4].
	if got := fmt.Sprintf("%x", wire.ClusterTag("default")); got != "8ee4da24bf5d9531" {
		t.Errorf("ClusterTag(default) = %s", got)
	}
	if got := fmt.Sprintf("%x", wire.KeyIDOf(nil)); got != "e3b0c442" {
		t.Errorf("KeyIDOf(nil) = %s", got)
	}
}

// detMode sorts map keys, so hand-made bodies (and the seeds made of them)
// come out the same every time.
var detMode, _ = cbor.CoreDetEncOptions().EncMode()

// body is a hand-made body: the type byte and v in CBOR.
func body(t testing.TB, typ wire.MsgType, v any) []byte {
	t.Helper()
	b, err := detMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{byte(typ)}, b...)
}

func TestDecodeRejects(t *testing.T) {
	s := wire.Plaintext(cluster)
	good := mustEncode(t, hdrA, &wire.Query{ID: 1, Key: "k"}, s)
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	small := record("k", []byte("v"))
	wrongLeaf := keyEntry("a", small)
	wrongLeaf.KeyHash[0]++
	cases := []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"empty", nil, "short"},
		{"magic only", []byte("CK"), "short"},
		{"header cut", good[:wire.HeaderSize-1], "short"},
		{"no body", good[:wire.HeaderSize], "short"},
		{"bad magic", with(0, 'X'), "magic"},
		{"lowercase magic", with(1, 'k'), "magic"},
		{"version 0", with(2, 0), "version"},
		{"version 2", with(2, 2), "version"},
		{"version 2, short", with(2, 2)[:3], "version"},
		{"other cluster", mustEncode(t, hdrA, &wire.Query{ID: 1}, wire.Plaintext("other")), "cluster"},
		{"key id", with(5, 1), "key"},
		{"sealed flag", with(3, byte(wire.FlagSealed)), "key"},
		{"type 0", frame(0, 0xa0), "type"},
		{"type 15", frame(15, 0xa0), "type"},
		{"type 255", frame(255, 0xa0), "type"},
		{"type only", frame(byte(wire.TypeQuery)), "malformed"},
		{"not a map", frame(byte(wire.TypeQuery), 0x01), "malformed"},
		{"null", frame(byte(wire.TypeSyncDone), 0xf6), "malformed"},
		{"array", frame(byte(wire.TypeSyncDone), 0x80), "malformed"},
		{"cut map", frame(byte(wire.TypeQuery), 0xa2, 0x01, 0x01), "malformed"},
		{"trailing bytes", frame(byte(wire.TypeSyncDone), 0xa0, 0x00), "malformed"},
		{"indefinite map", frame(byte(wire.TypeSyncDone), 0xbf, 0xff), "malformed"},
		{"duplicate key", frame(byte(wire.TypeQuery), 0xa2, 0x01, 0x01, 0x01, 0x02), "malformed"},
		{"tag", frame(byte(wire.TypeQuery), 0xa1, 0x01, 0xc1, 0x01), "malformed"},
		{"key not utf-8", append(frame(byte(wire.TypeQuery)), body(t, 0, map[int]any{2: "\xff"})[1:]...), "malformed"},
		{"key as int", append(frame(byte(wire.TypeQuery)), body(t, 0, map[int]any{2: 5})[1:]...), "malformed"},
		{"short node id", frame(body(t, wire.TypeAck, map[int]any{4: nodeA[:15]})...), "malformed"},
		{"top over 255", frame(body(t, wire.TypeSyncLeaves, map[int]any{1: 256})...), "malformed"},
		{"short digests", frame(body(t, wire.TypeSyncTop, map[int]any{1: make([]byte, 4095)})...), "malformed"},
		{"digests as array", frame(body(t, wire.TypeSyncTop, map[int]any{1: make([]store.Hash, 256)})...), "malformed"},
		{"hello from another", frame(body(t, wire.TypeHello, &wire.Hello{ID: nodeB, Epoch: hdrA.Epoch})...), "malformed"},
		{"hello of another epoch", frame(body(t, wire.TypeHello, &wire.Hello{ID: nodeA, Epoch: 1})...), "malformed"},
		{"bye from another", frame(body(t, wire.TypeBye, &wire.Bye{ID: nodeB, Epoch: hdrA.Epoch})...), "malformed"},
		{"ack from another", frame(body(t, wire.TypeAck, &wire.Ack{From: nodeB})...), "malformed"},
		{"update hash", frame(body(t, wire.TypeUpdate, &wire.Update{Record: small, Hash: store.Hash{1}})...), "malformed"},
		{"update record with unknown field", frame(body(t, wire.TypeUpdate, map[int]any{1: map[int]any{1: "k", 99: 1}})...), "malformed"},
		{"announce key hash", frame(body(t, wire.TypeAnnounce, &wire.Announce{Key: "k"})...), "malformed"},
		{"answer record not found", frame(body(t, wire.TypeAnswer, &wire.Answer{Hash: small.Hash(), Lamport: small.Lamport, VV: small.VV, Record: &small})...), "malformed"},
		{"answer record lamport", frame(body(t, wire.TypeAnswer, &wire.Answer{Found: true, Hash: small.Hash(), VV: small.VV, Record: &small})...), "malformed"},
		{"answer record vv", frame(body(t, wire.TypeAnswer, &wire.Answer{Found: true, Hash: small.Hash(), Lamport: small.Lamport, Record: &small})...), "malformed"},
		{"fetch reply without record", frame(body(t, wire.TypeFetchReply, &wire.FetchReply{Found: true})...), "malformed"},
		{"fetch reply record not found", frame(body(t, wire.TypeFetchReply, map[int]any{2: small})...), "malformed"},
		{"sync keys outside leaf", frame(body(t, wire.TypeSyncKeys, &wire.SyncKeys{Leaf: store.KeyHash("a").Leaf(), Entries: []wire.KeyEntry{wrongLeaf}})...), "malformed"},
		{"too many entries", frame(body(t, wire.TypeSyncKeys, map[int]any{2: make([][0]byte, wire.MaxEntries+1)})...), "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, m, err := wire.Decode(c.frame, s)
			if err == nil {
				t.Fatalf("Decode accepted %x as %#v", c.frame, m)
			}
			if m != nil {
				t.Errorf("Decode returned a message with %v", err)
			}
			t.Logf("%v", err)
			if got := wire.Reason(err); got != c.reason {
				t.Errorf("Reason(%v) = %q, want %q", err, got, c.reason)
			}
			if c.reason == "version" && h.Version != c.frame[2] {
				t.Errorf("header version = %d, want %d", h.Version, c.frame[2])
			}
		})
	}
}

func TestReason(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                    "",
		errors.New("read: connection reset"):   "other",
		fmt.Errorf("x: %w", wire.ErrTooLarge):  "too_large",
		fmt.Errorf("x: %w", wire.ErrMalformed): "malformed",
	} {
		if got := wire.Reason(err); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestUnknownFieldsIgnored: a later minor version may add fields; this one
// must still read the rest.
func TestUnknownFieldsIgnored(t *testing.T) {
	b := frame(body(t, wire.TypeQuery, map[int]any{
		1: 77, 2: "some/key", 50: "new", 99: map[string]any{"nested": []int{1, 2}}, -5: true,
	})...)
	_, m, err := wire.Decode(b, wire.Plaintext(cluster))
	if err != nil {
		t.Fatal(err)
	}
	if q, ok := m.(*wire.Query); !ok || q.ID != 77 || q.Key != "some/key" {
		t.Errorf("got %#v", m)
	}
	hello := frame(body(t, wire.TypeHello, map[int]any{1: nodeA, 3: hdrA.Epoch, 4: "h:1", 11: []byte("digest-top")})...)
	if _, m, err := wire.Decode(hello, wire.Plaintext(cluster)); err != nil || m.(*wire.Hello).Addr != "h:1" {
		t.Errorf("hello with a field from the future: %#v, %v", m, err)
	}
}

func TestEncodeRefusesWhatDecodeWould(t *testing.T) {
	s := wire.Plaintext(cluster)
	bad := []wire.Message{
		&wire.Hello{ID: nodeB, Epoch: hdrA.Epoch},
		&wire.Bye{ID: nodeA},
		&wire.Ack{From: nodeB},
		&wire.Update{Record: record("k", nil)},
		&wire.FetchReply{Found: true},
	}
	for _, m := range bad {
		if _, err := wire.Encode(hdrA, m, s); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("Encode(%#v) = %v, want ErrMalformed", m, err)
		}
	}
}

func TestUpdateAck(t *testing.T) {
	r := record("k", []byte("v"))
	r.Origin, r.Lamport = nodeB, 12
	got := wire.NewUpdate(r).Ack(nodeA)
	want := &wire.Ack{Key: "k", Origin: nodeB, Lamport: 12, From: nodeA}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Ack = %+v, want %+v", got, want)
	}
}

// xorSealer stands in for the keyed sealer: it proves Encode and Decode
// go through the interface, and that a keyless node refuses sealed frames.
type xorSealer struct{ key byte }

func (x xorSealer) KeyID() [4]byte    { return [4]byte{x.key, 1, 2, 3} }
func (xorSealer) ClusterTag() [8]byte { return [8]byte{} }
func (xorSealer) Overhead() int       { return 1 }
func (x xorSealer) Seal(hdr, body []byte) ([]byte, error) {
	out := make([]byte, 0, len(body)+1)
	for _, c := range body {
		out = append(out, c^x.key)
	}
	return append(out, hdr[0]^x.key), nil // a "tag" over the header
}
func (x xorSealer) Open(h wire.Header, sealed []byte) ([]byte, error) {
	if h.KeyID != x.KeyID() || h.Flags&wire.FlagSealed == 0 {
		return nil, wire.ErrKey
	}
	if len(sealed) == 0 || sealed[len(sealed)-1] != 'C'^x.key {
		return nil, errors.New("authentication failed")
	}
	out := make([]byte, len(sealed)-1)
	for i := range out {
		out[i] = sealed[i] ^ x.key
	}
	return out, nil
}

func TestSealerPlugsIn(t *testing.T) {
	sealed := xorSealer{key: 0x5a}
	m := wire.NewUpdate(record("k", []byte("secret value")))
	b := mustEncode(t, hdrA, m, sealed)
	if bytes.Contains(b, []byte("secret value")) {
		t.Error("the sealer was not used")
	}
	if n := wire.UpdateSize(&m.Record, sealed); n != len(b) {
		t.Errorf("UpdateSize = %d, frame is %d", n, len(b))
	}
	h, got, err := wire.Decode(bytes.Clone(b), sealed)
	if err != nil || !reflect.DeepEqual(received(t, got), wire.Message(m)) {
		t.Fatalf("Decode = %#v, %v", got, err)
	}
	if h.Flags&wire.FlagSealed == 0 || h.KeyID != sealed.KeyID() || h.Cluster != ([8]byte{}) {
		t.Errorf("header = %+v", h)
	}
	plain := mustEncode(t, hdrA, m, wire.Plaintext(cluster))
	for name, c := range map[string]struct {
		frame []byte
		s     wire.Sealer
	}{
		"sealed to a keyless node":  {b, wire.Plaintext(cluster)},
		"plaintext to a keyed node": {plain, sealed},
		"another key":               {b, xorSealer{key: 0x33}},
		"failed authentication":     {append(bytes.Clone(b[:len(b)-1]), 0), sealed},
	} {
		_, _, err := wire.Decode(c.frame, c.s)
		if !errors.Is(err, wire.ErrKey) {
			t.Errorf("%s: Decode = %v, want ErrKey", name, err)
		}
	}
}

// TestRejectsAllocateNothing: what fails before the body is decoded costs
// no allocation, so a flood of junk costs only the reading.
func TestRejectsAllocateNothing(t *testing.T) {
	s := wire.Plaintext(cluster)
	good := mustEncode(t, hdrA, &wire.Query{ID: 1, Key: "k"}, s)
	frames := map[string][]byte{
		"short":   good[:10],
		"magic":   append([]byte("XX"), good[2:]...),
		"version": append([]byte("CK\x09"), good[3:]...),
		"cluster": mustEncode(t, hdrA, &wire.Query{}, wire.Plaintext("other")),
		"key":     mustEncode(t, hdrA, &wire.Query{}, xorSealer{key: 1}),
	}
	for reason, b := range frames {
		var err error
		allocs := testing.AllocsPerRun(100, func() { _, _, err = wire.Decode(b, s) })
		if wire.Reason(err) != reason {
			t.Errorf("%s: Decode = %v", reason, err)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per rejected frame", reason, allocs)
		}
	}
}

// allocBytes returns how many bytes f allocates per call, on average.
func allocBytes(runs int, f func()) uint64 {
	f() // warm up the CBOR type cache
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestHugeDeclaredLengths: a length in the body larger than the frame is
// refused before anything that size is allocated.
func TestHugeDeclaredLengths(t *testing.T) {
	s := wire.Plaintext(cluster)
	bodies := map[string][]byte{
		"byte string 4 GiB": {byte(wire.TypeUpdate), 0xa1, 0x01, 0xa1, 0x02, 0x5a, 0xff, 0xff, 0xff, 0xff, 0},
		"byte string 2^63":  {byte(wire.TypeUpdate), 0xa1, 0x01, 0xa1, 0x02, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0},
		"text string 1 GiB": {byte(wire.TypeQuery), 0xa1, 0x02, 0x7a, 0x40, 0, 0, 0, 'k'},
		"array 2^31":        {byte(wire.TypeSyncRecords), 0xa1, 0x01, 0x9a, 0x7f, 0xff, 0xff, 0xff, 0xa0},
		"array 60000":       {byte(wire.TypeSyncRecords), 0xa1, 0x01, 0x99, 0xea, 0x60, 0xa0},
		"map 2^32":          {byte(wire.TypeAnswer), 0xa1, 0x05, 0xba, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, b := range bodies {
		f := frame(b...)
		var err error
		n := allocBytes(50, func() { _, _, err = wire.Decode(f, s) })
		if !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", name, err)
		}
		if n > 4096 {
			t.Errorf("%s: %d bytes allocated per frame", name, n)
		}
	}
}

// TestSizes holds RecordSize and UpdateSize to the real encoding over
// records of every shape the CBOR heads distinguish.
func TestSizes(t *testing.T) {
	s := wire.Plaintext(cluster)
	lens := []int{0, 1, 23, 24, 255, 256, 1000, 65535, 65536, 70000}
	nums := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	ats := []int64{0, -1, -24, -25, 1_700_000_000_000, -1 << 63, 1<<63 - 1}
	for i := range 200 {
		r := store.Record{
			Key:      string(bytes.Repeat([]byte("k"), 1+lens[i%len(lens)]%1024)),
			Value:    make([]byte, lens[(i/3)%len(lens)]),
			Deleted:  i%5 == 0,
			Lamport:  nums[i%len(nums)],
			Origin:   nodeA,
			LWW:      store.Stamp{Lamport: nums[(i/2)%len(nums)], Origin: nodeB},
			At:       ats[i%len(ats)],
			Fallback: i%7 == 0,
			VV:       store.VV{},
		}
		if i%4 == 1 && !r.Deleted {
			r.TTL = int64(nums[(i/4)%len(nums)] >> 1)
			r.Left = r.TTL / 3
		}
		if i%3 == 1 {
			r.Ephemeral = nums[(i/3)%len(nums)]
		}
		for j := range i % 30 {
			r.VV[store.NodeID{byte(j), byte(i)}] = nums[(i+j)%len(nums)] // zeros too
		}
		enc, err := r.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.RecordSize(&r); got != len(enc) {
			t.Fatalf("record %d: RecordSize = %d, encoding is %d", i, got, len(enc))
		}
		b := mustEncode(t, hdrA, wire.NewUpdate(r), s)
		if got := wire.UpdateSize(&r, s); got != len(b) {
			t.Fatalf("record %d: UpdateSize = %d, frame is %d", i, got, len(b))
		}
	}
}
