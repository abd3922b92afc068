package wire_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// benchUpdate is a typical small write: a 100-byte value, a 3-node vector.
func benchUpdate() *wire.Update {
	r := record("service/frontend/config", bytes.Repeat([]byte("v"), 100))
	r.VV[nodeA], r.VV[nodeB], r.VV[[16]byte{0xcc}] = 7, 3, 11
	return wire.NewUpdate(r)
}

func BenchmarkEncodeUpdate(b *testing.B) {
	m, s := benchUpdate(), wire.Plaintext(cluster)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Encode(hdrA, m, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUpdate(b *testing.B) {
	s := wire.Plaintext(cluster)
	f := mustEncode(b, hdrA, benchUpdate(), s)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := wire.Decode(f, s); err != nil {
			b.Fatal(err)
		}
	}
}

// benchUpdate3 is a datagram of a replicated write's group commit (issue
// 12): three writes of 256-byte values, each asking two peers to ACK, and
// a Follow.
func benchUpdate3() *wire.Update {
	var u *wire.Update
	for i := range 3 {
		r := record(fmt.Sprintf("bench/key/%06d", i), bytes.Repeat([]byte{'v'}, 256))
		r.VV[[16]byte{0xcc}] = 11
		w := wire.Update{Record: r, Hash: r.Hash(), AckRequest: wire.AckRequest{AckFrom: []store.NodeID{nodeB, {0xcc}}}}
		if u == nil {
			u = &w
			continue
		}
		u.More = append(u.More, w)
	}
	u.Follow = 1
	return u
}

// benchAck10 acknowledges eleven writes: its own and ten in More.
func benchAck10() *wire.Ack {
	a := &wire.Ack{Key: "bench/key/000000", Origin: nodeB, Lamport: 1 << 20, From: nodeA}
	for i := range 10 {
		a.More = append(a.More, wire.AckEntry{Key: fmt.Sprintf("bench/key/%06d", i+1), Origin: nodeB, Lamport: 1<<20 + uint64(i)})
	}
	return a
}

// BenchmarkCodec compares the direct codec of UPDATE and ACK (Encode,
// Decode) with the cbor package's (EncodeReflect, DecodeReflect).
// Decode's figures include the checks both paths run (an UPDATE's record
// hashes).
func BenchmarkCodec(b *testing.B) {
	s := wire.Plaintext(cluster)
	codecs := []struct {
		name   string
		encode func(wire.Header, wire.Message, wire.Sealer) ([]byte, error)
		decode func([]byte, wire.Sealer) (wire.Header, wire.Message, error)
	}{
		{"fast", wire.Encode, wire.Decode},
		{"reflect", wire.EncodeReflect, wire.DecodeReflect},
	}
	for _, msg := range []struct {
		name string
		m    wire.Message
	}{{"update3", benchUpdate3()}, {"ack10", benchAck10()}} {
		f := mustEncode(b, hdrA, msg.m, s)
		for _, c := range codecs {
			b.Run("encode/"+msg.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.encode(hdrA, msg.m, s); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("decode/"+msg.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(f)))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := c.decode(f, s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
