package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
)

func TestFrames(t *testing.T) {
	frames := [][]byte{{}, []byte("one"), bytes.Repeat([]byte{0xab}, 200_000), {0}}
	var buf bytes.Buffer
	for _, f := range frames {
		if err := wire.WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range frames {
		got, err := wire.ReadFrame(&buf, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
		}
	}
	if _, err := wire.ReadFrame(&buf, 1<<20); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func TestFramesOverAConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	msg := mustEncode(t, hdrA, wire.NewUpdate(record("k", []byte("v"))), wire.Plaintext(cluster))
	go func() { _ = wire.WriteFrame(a, msg) }()
	got, err := wire.ReadFrame(b, 1<<16)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("ReadFrame = %x, %v", got, err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	prefix := func(n uint32, rest ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), rest...)
	}
	cases := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"over max", prefix(101), 100, wire.ErrTooLarge},
		{"4 GiB", prefix(1<<32 - 1), 1 << 26, wire.ErrTooLarge},
		{"negative max", prefix(0), -1, wire.ErrTooLarge},
		{"cut prefix", []byte{0, 0}, 100, io.ErrUnexpectedEOF},
		{"cut body", prefix(10, 1, 2, 3), 100, io.ErrUnexpectedEOF},
		{"no body", prefix(10), 100, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := wire.ReadFrame(bytes.NewReader(c.in), c.max)
			if !errors.Is(err, c.want) || b != nil {
				t.Errorf("ReadFrame = %d bytes, %v; want %v", len(b), err, c.want)
			}
		})
	}
	if wire.Reason(wire.ErrTooLarge) != "too_large" {
		t.Error("ErrTooLarge has no reason")
	}
}

// TestReadFrameAllocatesWhatArrives: a peer declaring a frame far larger
// than it sends costs little memory, and one over max costs none.
func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	const declared = 60 << 20
	liar := binary.BigEndian.AppendUint32(nil, declared)
	liar = append(liar, make([]byte, 1000)...)
	n := allocBytes(20, func() {
		if _, err := wire.ReadFrame(bytes.NewReader(liar), 64<<20); err != io.ErrUnexpectedEOF {
			t.Errorf("ReadFrame = %v", err)
		}
	})
	if n > 256<<10 {
		t.Errorf("a frame declaring %d bytes and sending 1000 allocated %d", declared, n)
	}
	huge := binary.BigEndian.AppendUint32(nil, 1<<32-1)
	// Many runs: the count is the process's, and a stray allocation of a
	// test running beside this one must not pass for 64 bytes a run.
	r := bytes.NewReader(huge) // reset, not made, per run: only ReadFrame is counted
	n = allocBytes(5000, func() {
		r.Reset(huge)
		if _, err := wire.ReadFrame(r, 1<<20); err != wire.ErrTooLarge {
			t.Errorf("ReadFrame = %v", err)
		}
	})
	if n > 64 {
		t.Errorf("refusing a 4 GiB frame allocated %d bytes", n)
	}
}
