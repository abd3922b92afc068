package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudknowledge/ck/store"
)

// Version is the envelope's format version, which is also the protocol's
// major version: a frame of another version is dropped with ErrVersion.
// Minor is the protocol's minor version: peers of one major version and
// different minors interoperate (new message types are dropped as ErrType,
// new fields ignored). 1.1 added records with a ttl (record field 10) and
// the remaining lifetime that travels with them (ttl.go): a 1.0 node
// refuses a frame holding such a record, so TTL keys wait until every
// node runs 1.1. 1.2 added UPDATE's More (several writes in one datagram,
// messages.go), which a 1.1 node reads as the first write only.
const (
	Version byte   = 1
	Minor   byte   = 2
	Proto   uint16 = uint16(Version)<<8 | uint16(Minor) // HELLO's Proto
)

// HeaderSize is the length of the fixed envelope header:
//
//	offset size field
//	     0    2 magic "CK"
//	     2    1 format version (Version)
//	     3    1 flags (FlagSealed; other bits zero, ignored on receipt)
//	     4    4 key id (KeyIDOf the cluster key; zero without a key)
//	     8   16 sender node id
//	    24    8 sender's boot epoch, big endian
//	    32    8 counter, big endian (per epoch for datagrams, per stream on streams)
//	    40    8 cluster tag (ClusterTag(name) without a key; zero with one)
//	    48      body: type byte ‖ CBOR map, as Seal left it
const HeaderSize = 48

const magic = "CK"

// Flags are the envelope's flag bits.
type Flags uint8

// FlagSealed marks a body sealed with the key KeyID names. Encode sets it
// whenever the Sealer has a key.
const FlagSealed Flags = 1 << 0

// Header is the envelope around every message. Everything in it travels in
// the clear; with a key it is the sealed body's authenticated data.
type Header struct {
	Version byte
	Flags   Flags
	KeyID   [4]byte
	Sender  store.NodeID
	Epoch   uint64 // the sender's boot epoch: max(stored + 1, unix ms)
	Counter uint64 // strictly increasing per (sender, epoch) or per stream
	Cluster [8]byte
}

// AppendBinary appends the header's HeaderSize bytes to b. A Sealer's Open
// uses it to rebuild the authenticated data byte for byte.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, magic...)
	b = append(b, h.Version, byte(h.Flags))
	b = append(b, h.KeyID[:]...)
	b = append(b, h.Sender[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Counter)
	return append(b, h.Cluster[:]...), nil
}

// ParseHeader parses the header at the start of a frame. It allocates
// nothing. With ErrVersion the returned Header holds only the Version, for
// the log line.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < len(magic)+1 {
		return Header{}, ErrShort
	}
	if string(b[:len(magic)]) != magic {
		return Header{}, ErrMagic
	}
	if b[2] != Version {
		return Header{Version: b[2]}, ErrVersion
	}
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	return Header{
		Version: b[2],
		Flags:   Flags(b[3]),
		KeyID:   [4]byte(b[4:8]),
		Sender:  store.NodeID(b[8:24]),
		Epoch:   binary.BigEndian.Uint64(b[24:32]),
		Counter: binary.BigEndian.Uint64(b[32:40]),
		Cluster: [8]byte(b[40:48]),
	}, nil
}

// Encode returns the frame carrying msg: h's Sender, Epoch and Counter (and
// any Flags the caller sets), with Version, KeyID, ClusterTag and
// FlagSealed filled in from the protocol and s.
func Encode(h Header, msg Message, s Sealer) ([]byte, error) {
	return encode(h, msg, s, true)
}

// encode is Encode; with fast, UPDATE and ACK are written directly
// (fastcodec.go), the same bytes encMode writes.
func encode(h Header, msg Message, s Sealer, fast bool) ([]byte, error) {
	h.Version = Version
	h.KeyID = s.KeyID()
	h.Cluster = s.ClusterTag()
	if h.KeyID != ([4]byte{}) {
		h.Flags |= FlagSealed
	}
	carryLeft(msg)
	if err := msg.check(h); err != nil {
		return nil, fmt.Errorf("encoding %w: %s: %v", ErrMalformed, msg.Type(), err)
	}
	b := make([]byte, 0, HeaderSize+1+sizeHint(msg)+s.Overhead())
	b, _ = h.AppendBinary(b)
	b = append(b, byte(msg.Type()))
	frame, ok := b, false
	if fast {
		frame, ok = appendFast(b, msg)
	}
	if !ok {
		buf := bytes.NewBuffer(b)
		if err := encMode.MarshalToBuffer(msg, buf); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", msg.Type(), err)
		}
		frame = buf.Bytes()
	}
	sealed, err := s.Seal(frame[:HeaderSize:HeaderSize], frame[HeaderSize:])
	if err != nil {
		return nil, fmt.Errorf("sealing %s: %w", msg.Type(), err)
	}
	// sealed is the body itself (plaintext), the body grown in place, or
	// new memory: append is right for all three, and copies nothing for
	// the first.
	return append(frame[:HeaderSize], sealed...), nil
}

// Decode checks a received frame and returns its header and message. It
// rejects, before allocating anything sized from the frame, what is short
// (ErrShort), not ours (ErrMagic), of another version (ErrVersion), of
// another cluster (ErrCluster), unopenable (ErrKey) or, with a replay
// filter, seen before (ErrReplay); then an unknown type (ErrType) or a
// body that does not decode or breaks its message's invariants
// (ErrMalformed). With an error the Header is what was parsed,
// for logs and metrics only: nothing in it was authenticated.
//
// The message does not alias b, but s.Open may have scribbled on b.
func Decode(b []byte, s Sealer) (Header, Message, error) {
	return decode(b, s, true)
}

// decode is Decode; fast as decodeBody's.
func decode(b []byte, s Sealer, fast bool) (Header, Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	body, err := s.Open(h, b[HeaderSize:])
	if err != nil {
		if !errors.Is(err, ErrCluster) && !errors.Is(err, ErrKey) && !errors.Is(err, ErrReplay) {
			err = fmt.Errorf("%w: %w", ErrKey, err)
		}
		return h, nil, err
	}
	msg, err := decodeBody(h, body, fast)
	return h, msg, err
}
