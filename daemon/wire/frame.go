package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
)

// On a stream every frame (an envelope, as Encode makes it) is preceded by
// its length as 4 bytes, big endian.
const framePrefix = 4

// readChunk is how much ReadFrame allocates ahead of the bytes that have
// actually arrived: a peer declaring a 64 MiB frame and sending nothing
// costs this, not 64 MiB.
const readChunk = 64 << 10

// WriteFrame writes b to w as one length-prefixed frame, in one write
// (writev on a net.Conn). It is not safe to call concurrently on one w.
func WriteFrame(w io.Writer, b []byte) error {
	if uint64(len(b)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var prefix [framePrefix]byte
	binary.BigEndian.PutUint32(prefix[:], uint32(len(b)))
	bufs := net.Buffers{prefix[:], b}
	_, err := bufs.WriteTo(w)
	return err
}

// ReadFrame reads one frame written by WriteFrame. A declared length over
// max fails with ErrTooLarge before anything is allocated; a frame is
// otherwise allocated as its bytes arrive, never more than readChunk ahead
// of them. A stream that ends between frames gives io.EOF; one that ends
// inside a frame, io.ErrUnexpectedEOF. The returned slice is the caller's.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var prefix [framePrefix]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if max < 0 || uint64(n) > uint64(max) {
		return nil, ErrTooLarge
	}
	size := int(n)
	b := make([]byte, 0, min(size, readChunk))
	for len(b) < size {
		if len(b) == cap(b) {
			// Double what has arrived: O(log n) copies, at most 2x the
			// bytes received in memory.
			b = slices.Grow(b, min(size-len(b), cap(b)))
		}
		m, err := io.ReadFull(r, b[len(b):min(cap(b), size)])
		b = b[:len(b)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
}
