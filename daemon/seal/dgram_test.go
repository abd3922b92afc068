package seal_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
)

func TestDatagramRoundTrip(t *testing.T) {
	d := seal.NewDatagram(ring(t, key("a")), cluster, nil)
	for _, msg := range []wire.Message{
		update(),
		&wire.Query{ID: 9, Key: "k"},
		&wire.Hello{ID: nodeA, Name: "alpha", Epoch: epoch1, Addr: "127.0.0.1:1", Proto: wire.Proto},
	} {
		s := newSender(nodeA, epoch1, d)
		b := s.frame(t, msg)
		h, _ := wire.ParseHeader(b)
		if h.Flags&wire.FlagSealed == 0 || h.KeyID != wire.KeyIDOf(key("a")) || h.Cluster != ([8]byte{}) {
			t.Errorf("%s: header %+v", msg.Type(), h)
		}
		if n := wire.UpdateSize(&update().(*wire.Update).Record, d); msg.Type() == wire.TypeUpdate && n != len(b) {
			t.Errorf("UpdateSize = %d, frame is %d", n, len(b))
		}
		if bytes.Contains(b, []byte("some/key")) || bytes.Contains(b, []byte("alpha")) {
			t.Errorf("%s: plaintext in the frame", msg.Type())
		}
		_, got, err := decode(b, d)
		if u, ok := got.(*wire.Update); ok {
			u.Raw = nil // what Decode adds: the record's encoding it checked the hash over
		}
		if err != nil || !reflect.DeepEqual(got, msg) {
			t.Errorf("%s: Decode = %#v, %v", msg.Type(), got, err)
		}
	}
}

// TestTamperEveryByte: changing any single byte of a sealed frame — header,
// ciphertext or tag — makes it fail, and so does any change of the cluster
// name it is opened under.
func TestTamperEveryByte(t *testing.T) {
	d := seal.NewDatagram(ring(t, key("a"), key("b")), cluster, nil)
	b := newSender(nodeA, epoch1, d).frame(t, update())
	if _, _, err := decode(b, d); err != nil {
		t.Fatal(err)
	}
	opens := countOpens(t)
	for i := range b {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(b)
			bad[i] ^= flip
			before := opens.Load()
			_, m, err := wire.Decode(bad, d)
			if err == nil || m != nil {
				t.Fatalf("byte %d ^ %#x: Decode = %v, %v", i, flip, m, err)
			}
			want := "key"
			switch {
			case i < 2:
				want = "magic"
			case i == 2:
				want = "version"
			}
			if r := wire.Reason(err); r != want {
				t.Errorf("byte %d ^ %#x: reason %q (%v), want %q", i, flip, r, err, want)
			}
			// The key id picks one key: a changed id names none, and
			// every other change costs exactly one attempt.
			if n := opens.Load() - before; n > 1 {
				t.Errorf("byte %d ^ %#x: %d AEAD attempts", i, flip, n)
			}
		}
	}
	for _, other := range tamperedNames(cluster) {
		if _, _, err := decode(b, seal.NewDatagram(ring(t, key("a")), other, nil)); !errors.Is(err, wire.ErrKey) {
			t.Errorf("opened under cluster %q: %v", other, err)
		}
	}
	for _, n := range []int{wire.HeaderSize, wire.HeaderSize + seal.TagSize, len(b) - 1} {
		if _, _, err := decode(b[:n], d); err == nil {
			t.Errorf("cut to %d bytes: opened", n)
		}
	}
}

// tamperedNames returns name with each byte changed, and longer and
// shorter by one.
func tamperedNames(name string) []string {
	out := []string{name + "x", name[:len(name)-1], "", "default"}
	for i := range name {
		b := []byte(name)
		b[i] ^= 0x01
		out = append(out, string(b))
	}
	return out
}

// TestRejectWithoutTrying: a frame the ring cannot open because of its
// header — another key, an unknown id, plaintext, a cluster tag — is
// refused before any AEAD attempt, allocating nothing, however many keys
// the ring holds; a forged frame under a known id costs exactly one.
func TestRejectWithoutTrying(t *testing.T) {
	other := newSender(nodeA, epoch1, seal.NewDatagram(ring(t, key("x")), cluster, nil)).frame(t, update())
	bogusID := bytes.Clone(other)
	copy(bogusID[4:8], []byte{0xde, 0xad, 0xbe, 0xef})
	plain := newSender(nodeA, epoch1, wire.Plaintext(cluster)).frame(t, update())
	tagged := bytes.Clone(newSender(nodeA, epoch1, seal.NewDatagram(ring(t, key("a")), cluster, nil)).frame(t, update()))
	copy(tagged[40:48], []byte("clusterX"))
	forged := bytes.Clone(newSender(nodeA, epoch1, seal.NewDatagram(ring(t, key("a")), cluster, nil)).frame(t, update()))
	forged[len(forged)-1] ^= 1

	for _, size := range []int{1, 8} {
		keys := [][]byte{key("a")}
		for i := 1; i < size; i++ {
			keys = append(keys, key(string(rune('b'+i))))
		}
		d := seal.NewDatagram(ring(t, keys...), cluster, nil)
		for _, c := range []struct {
			name  string
			frame []byte
			tries int64
		}{
			{"another key", other, 0},
			{"bogus key id", bogusID, 0},
			{"plaintext", plain, 0},
			{"cluster tag", tagged, 0},
			{"forged", forged, 1},
		} {
			opens := countOpens(t)
			h, err := wire.ParseHeader(c.frame)
			if err != nil {
				t.Fatal(err)
			}
			sealed := bytes.Clone(c.frame[wire.HeaderSize:])
			if _, err := d.Open(h, sealed); !errors.Is(err, wire.ErrKey) {
				t.Errorf("%d keys, %s: Open = %v, want ErrKey", size, c.name, err)
			}
			if n := opens.Load(); n != c.tries {
				t.Errorf("%d keys, %s: %d AEAD attempts, want %d", size, c.name, n, c.tries)
			}
			if c.tries == 0 {
				allocs := testing.AllocsPerRun(100, func() { d.Open(h, sealed) })
				if allocs != 0 {
					t.Errorf("%d keys, %s: %v allocations", size, c.name, allocs)
				}
			}
		}
	}
}

// TestOpenAllocatesNothing: opening a frame of a known sender allocates
// nothing: it decrypts in place.
func TestOpenAllocatesNothing(t *testing.T) {
	d := seal.NewDatagram(ring(t, key("a")), cluster, seal.NewReplay(&seal.MemoryEpochs{}))
	s := newSender(nodeA, epoch1, d)
	frames := s.frames(t, 200)
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		h, _ := wire.ParseHeader(frames[i])
		if _, err := d.Open(h, frames[i][wire.HeaderSize:]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per open", allocs)
	}
}

// TestRotation walks the documented key rotation (README.md): add the new key everywhere,
// make it primary, remove the old one.
func TestRotation(t *testing.T) {
	sRing, rRing := ring(t, key("old")), ring(t, key("old"))
	sender := newSender(nodeA, epoch1, seal.NewDatagram(sRing, cluster, nil))
	recv := seal.NewDatagram(rRing, cluster, seal.NewReplay(&seal.MemoryEpochs{}))
	mustOpen := func(step string, b []byte) {
		t.Helper()
		if _, _, err := decode(b, recv); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	keyOf := func(b []byte) [4]byte { h, _ := wire.ParseHeader(b); return h.KeyID }

	underOld := sender.frame(t, update())
	mustOpen("before", underOld)

	// 1. Add the new key to every ring, as an other.
	sRing.Swap(ring(t, key("old"), key("new")))
	rRing.Swap(ring(t, key("old"), key("new")))
	b := sender.frame(t, update())
	if keyOf(b) != wire.KeyIDOf(key("old")) {
		t.Fatal("sealed with a key that is not primary")
	}
	mustOpen("new key added", b)

	// 2. Make it primary, the receiver first or last: both orders work.
	sRing.Swap(ring(t, key("new"), key("old")))
	b = sender.frame(t, update())
	if keyOf(b) != wire.KeyIDOf(key("new")) {
		t.Fatal("not sealed with the new primary")
	}
	mustOpen("sender switched", b)
	lateOld := seal.NewDatagram(ring(t, key("old")), cluster, nil)
	underOldLate := newSender(nodeB, epoch1, lateOld).frame(t, update())
	mustOpen("a node not yet switched", underOldLate)
	rRing.Swap(ring(t, key("new"), key("old")))
	mustOpen("both switched", sender.frame(t, update()))

	// 3. Remove the old key: its frames now fail, without an attempt.
	rRing.Swap(ring(t, key("new")))
	opens := countOpens(t)
	stale := newSender(nodeB, epoch1+1, lateOld).frame(t, update())
	if _, _, err := decode(stale, recv); !errors.Is(err, wire.ErrKey) {
		t.Errorf("a frame under the removed key: %v", err)
	}
	if opens.Load() != 0 {
		t.Errorf("%d attempts on a removed key", opens.Load())
	}
	mustOpen("after removal", sender.frame(t, update()))
}

// TestSealRefusesForeignHeaders: Seal seals only what Encode would make
// with it.
func TestSealRefusesForeignHeaders(t *testing.T) {
	d := seal.NewDatagram(ring(t, key("a")), cluster, nil)
	good := newSender(nodeA, epoch1, d).frame(t, update())
	for name, hdr := range map[string][]byte{
		"short":     good[:wire.HeaderSize-1],
		"unsealed":  append(append([]byte{}, good[:3]...), append([]byte{0}, good[4:wire.HeaderSize]...)...),
		"other key": append(append([]byte{}, good[:4]...), append([]byte{9, 9, 9, 9}, good[8:wire.HeaderSize]...)...),
	} {
		if _, err := d.Seal(hdr, []byte("body")); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
}
