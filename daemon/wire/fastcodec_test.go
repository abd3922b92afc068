package wire_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// gen makes random UPDATEs and ACKs that Encode accepts, reaching every
// head width and every optional field.
type gen struct{ rng *rand.Rand }

func (g gen) num() uint64 {
	widths := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	if g.rng.IntN(2) == 0 {
		return widths[g.rng.IntN(len(widths))]
	}
	return g.rng.Uint64() >> g.rng.IntN(64)
}

func (g gen) id() (id store.NodeID) {
	for i := range id {
		id[i] = byte(g.rng.IntN(3))
	}
	return id
}

func (g gen) key() string {
	keys := []string{"", "k", "café/日本", strings.Repeat("x", 23), strings.Repeat("y", 24), strings.Repeat("z", 300)}
	return keys[g.rng.IntN(len(keys))]
}

func (g gen) record() store.Record {
	r := store.Record{Key: g.key(), Deleted: g.rng.IntN(4) == 0, Lamport: g.num(), Origin: g.id(),
		LWW: store.Stamp{Lamport: g.num(), Origin: g.id()}, At: int64(g.num()), Fallback: g.rng.IntN(4) == 0}
	if g.rng.IntN(2) == 0 {
		r.At = -r.At - 1
	}
	if n := g.rng.IntN(4); n > 0 {
		r.Value = make([]byte, []int{0, 1, 24, 256}[n])
		for i := range r.Value {
			r.Value[i] = byte(g.rng.IntN(256))
		}
	}
	if g.rng.IntN(3) > 0 {
		r.VV = store.VV{}
		for range g.rng.IntN(5) {
			r.VV[g.id()] = g.num()
		}
	}
	if g.rng.IntN(3) == 0 {
		r.TTL = 1 + int64(g.num()>>2)
		r.Left = g.rng.Int64N(r.TTL + 1)
	}
	if g.rng.IntN(4) == 0 {
		r.Ephemeral = 1 + g.num()>>1
	}
	return r
}

func (g gen) update(more bool) wire.Update {
	r := g.record()
	u := wire.Update{Record: r, Hash: r.Hash()}
	if g.rng.IntN(2) == 0 { // as a sender whose store encoded it (store.Early): the same bytes
		u.Raw, _ = r.MarshalCBOR()
	}
	switch g.rng.IntN(3) {
	case 1:
		u.NoAck = true
	case 2:
		u.AckFrom = make([]store.NodeID, 1+g.rng.IntN(wire.MaxAckFrom))
		for i := range u.AckFrom {
			u.AckFrom[i] = g.id()
		}
	}
	if g.rng.IntN(2) == 0 {
		u.Follow = uint8(g.num())
	}
	if more && g.rng.IntN(2) == 0 {
		u.More = make([]wire.Update, []int{1, 2, 23, 24}[g.rng.IntN(4)])
		for i := range u.More {
			u.More[i] = g.update(false)
		}
	}
	return u
}

func (g gen) ack() *wire.Ack {
	a := &wire.Ack{Key: g.key(), Origin: g.id(), Lamport: g.num(), From: hdrA.Sender}
	if g.rng.IntN(2) == 0 {
		a.More = make([]wire.AckEntry, []int{1, 2, 23, 24, 300}[g.rng.IntN(5)])
		for i := range a.More {
			a.More[i] = wire.AckEntry{Key: g.key(), Origin: g.id(), Lamport: g.num()}
		}
	}
	return a
}

// sameDecode decodes frame both ways and fails unless both refuse it with
// the same error or both return deep-equal messages; and, before the
// messages' checks (which could hide a difference: a record decoded
// differently fails its hash either way), unless what the direct reader
// takes the cbor package decodes to the same message. It returns the
// message, if any. The frame must be plaintext.
func sameDecode(t *testing.T, s wire.Sealer, frame []byte) wire.Message {
	t.Helper()
	if body := frame[min(len(frame), wire.HeaderSize):]; len(body) >= 2 {
		fast, slow, err := wire.ParseBoth(wire.MsgType(body[0]), body[1:])
		if fast != nil && (err != nil || !reflect.DeepEqual(fast, slow)) {
			t.Fatalf("body %x:\nread directly: %#v\nreflection:    %#v (%v)", body, fast, slow, err)
		}
	}
	hf, mf, errf := wire.Decode(bytes.Clone(frame), s)
	hr, mr, errr := wire.DecodeReflect(bytes.Clone(frame), s)
	if (errf == nil) != (errr == nil) || (errf != nil && errf.Error() != errr.Error()) {
		t.Fatalf("frame %x:\nfast error:       %v\nreflection error: %v", frame, errf, errr)
	}
	if hf != hr || !reflect.DeepEqual(mf, mr) {
		t.Fatalf("frame %x:\nfast:       %#v\nreflection: %#v", frame, mf, mr)
	}
	return mf
}

// sameEncode encodes m both ways and fails unless the frames (or the
// errors) are the same.
func sameEncode(t *testing.T, s wire.Sealer, m wire.Message) []byte {
	t.Helper()
	fast, errf := wire.Encode(hdrA, m, s)
	slow, errr := wire.EncodeReflect(hdrA, m, s)
	if !bytes.Equal(fast, slow) || (errf == nil) != (errr == nil) {
		t.Fatalf("%#v:\nfast       %x (%v)\nreflection %x (%v)", m, fast, errf, slow, errr)
	}
	return fast
}

// TestFastCodec: the direct encoder writes what the cbor package writes,
// the direct reader takes all of it itself, and both readers decode it,
// and damaged copies of it, alike.
func TestFastCodec(t *testing.T) {
	s := wire.Plaintext(cluster)
	rng := testseed.Rand(t)
	g := gen{rng}
	var msgs []wire.Message
	for name, m := range messages() {
		if strings.HasPrefix(name, "update") || strings.HasPrefix(name, "ack") {
			msgs = append(msgs, m)
		}
	}
	for range 300 {
		u := g.update(true)
		msgs = append(msgs, &u, g.ack())
	}
	for _, m := range msgs {
		frame := sameEncode(t, s, m)
		if !wire.FastDecodes(frame) {
			t.Fatalf("%s not read directly: %x", m.Type(), frame)
		}
		if got := sameDecode(t, s, frame); got == nil {
			t.Fatalf("%s did not decode: %x", m.Type(), frame)
		}
		for range 10 {
			sameDecode(t, s, damage(rng, frame))
		}
	}
}

// damage returns a copy of a frame with its body damaged at random: a
// byte changed, a bit flipped, cut short, grown, or a slice repeated.
func damage(rng *rand.Rand, frame []byte) []byte {
	b := bytes.Clone(frame)
	i := wire.HeaderSize + 1 + rng.IntN(len(b)-wire.HeaderSize-1)
	switch rng.IntN(5) {
	case 0:
		b[i] = byte(rng.IntN(256))
	case 1:
		b[i] ^= 1 << rng.IntN(8)
	case 2:
		b = b[:i]
	case 3:
		b = append(b, byte(rng.IntN(256)))
	default:
		j := i + rng.IntN(len(b)-i+1)
		b = append(b[:j:j], b[i:]...)
	}
	return b
}

// TestFastDecodeLeavesToReflection: what the direct reader does not take
// itself, it leaves to the cbor package, which decodes or refuses it as
// before (an unknown field ignored, keys out of order accepted; a
// duplicate key, an indefinite length, a tag refused).
func TestFastDecodeLeavesToReflection(t *testing.T) {
	s := wire.Plaintext(cluster)
	rec := record("k", []byte("v"))
	recBytes, _ := rec.MarshalCBOR()
	hash := rec.Hash()
	ackBody := func(pairs ...byte) []byte {
		return append([]byte{byte(wire.TypeAck)}, pairs...)
	}
	head := func(n int) []byte { return []byte{0xa0 | byte(n)} }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	text := func(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }
	id := func(n store.NodeID) []byte { return append([]byte{0x50}, n[:]...) }
	for _, tc := range []struct {
		name         string
		body         []byte
		decode, fast bool
	}{
		{"ack canonical", cat(ackBody(head(4)...), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 5, 4}, id(nodeA)), true, true},
		{"ack unknown field", cat(ackBody(head(5)...), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 5, 4}, id(nodeA), []byte{9, 0xf6}), true, false},
		{"ack out of order", cat(ackBody(head(4)...), []byte{2}, id(nodeB), []byte{1}, text("k"), []byte{3, 5, 4}, id(nodeA)), true, false},
		{"ack long head", cat(ackBody(head(4)...), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 0x18, 5, 4}, id(nodeA)), true, true},
		{"ack duplicate key", cat(ackBody(head(5)...), []byte{1}, text("k"), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 5, 4}, id(nodeA)), false, false},
		{"ack indefinite key", cat(ackBody(head(4)...), []byte{1, 0x7f, 0x61, 'k', 0xff, 2}, id(nodeB), []byte{3, 5, 4}, id(nodeA)), false, false},
		{"ack tagged lamport", cat(ackBody(head(4)...), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 0xc1, 5, 4}, id(nodeA)), false, false},
		{"ack short origin", cat(ackBody(head(4)...), []byte{1}, text("k"), []byte{2, 0x4f}, nodeB[:15], []byte{3, 5, 4}, id(nodeA)), false, false},
		{"ack more of two", cat(ackBody(head(5)...), []byte{1}, text("k"), []byte{2}, id(nodeB), []byte{3, 5, 4}, id(nodeA), []byte{5, 0x81, 0x82}, text("x"), id(nodeB)), false, false},
		{"ack bad utf-8", cat(ackBody(head(4)...), []byte{1}, text("\xff"), []byte{2}, id(nodeB), []byte{3, 5, 4}, id(nodeA)), false, false},
		{"update canonical", cat([]byte{byte(wire.TypeUpdate), 0xa2, 1}, recBytes, []byte{2}, id(store.NodeID(hash))), true, true},
		{"update null ack_from", cat([]byte{byte(wire.TypeUpdate), 0xa3, 1}, recBytes, []byte{2}, id(store.NodeID(hash)), []byte{4, 0xf6}), true, false},
		{"update empty more", cat([]byte{byte(wire.TypeUpdate), 0xa3, 1}, recBytes, []byte{2}, id(store.NodeID(hash)), []byte{6, 0x80}), true, true},
		{"update hash only", cat([]byte{byte(wire.TypeUpdate), 0xa1, 2}, id(store.NodeID(hash))), false, false},
		{"update follow 256", cat([]byte{byte(wire.TypeUpdate), 0xa3, 1}, recBytes, []byte{2}, id(store.NodeID(hash)), []byte{7, 0x19, 1, 0}), false, false},
		{"update huge more", cat([]byte{byte(wire.TypeUpdate), 0xa3, 1}, recBytes, []byte{2}, id(store.NodeID(hash)), []byte{6, 0x9b, 0x80, 0, 0, 0, 0, 0, 0, 0}), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := frame(tc.body...)
			m := sameDecode(t, s, f)
			if (m != nil) != tc.decode {
				t.Errorf("decoded %#v, want decoded %v", m, tc.decode)
			}
			if got := wire.FastDecodes(f); got != tc.fast {
				t.Errorf("read directly: %v, want %v", got, tc.fast)
			}
		})
	}
}
