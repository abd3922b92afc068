package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// NodeID names a node (and, as StoreID, a data file): 128 random bits.
type NodeID [16]byte

// NewNodeID returns a fresh random id.
func NewNodeID() NodeID {
	var id NodeID
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(id[:])
	return id
}

// ParseNodeID parses the 32 lowercase (or uppercase) hex characters String returns.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	if len(s) != 2*len(id) {
		return NodeID{}, fmt.Errorf("node id: want 32 hex characters, got %d", len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return NodeID{}, fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// String returns the id as 32 lowercase hex characters.
func (id NodeID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero id (no node).
func (id NodeID) IsZero() bool { return id == NodeID{} }

// Compare orders ids bytewise: -1, 0 or +1.
func (id NodeID) Compare(o NodeID) int { return bytes.Compare(id[:], o[:]) }

// MarshalText makes JSON show ids (and VV keys) as hex.
func (id NodeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses hex.
func (id *NodeID) UnmarshalText(b []byte) error {
	v, err := ParseNodeID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// UnmarshalCBOR insists on a 16-byte byte string: the cbor package would
// otherwise silently truncate or zero-pad, and two different ids received
// could become one.
func (id *NodeID) UnmarshalCBOR(b []byte) error {
	var raw []byte
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("node id: %w", err)
	}
	if len(raw) != len(id) {
		return fmt.Errorf("node id: want %d bytes, got %d", len(id), len(raw))
	}
	copy(id[:], raw)
	return nil
}

var _ cbor.Unmarshaler = (*NodeID)(nil)

// Hash is a record's hash (and a digest-tree node): 128 bits.
type Hash [16]byte

// String returns the hash as 32 lowercase hex characters.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros (an empty digest).
func (h Hash) IsZero() bool { return h == Hash{} }

func (h *Hash) xor(o Hash) {
	for i := range h {
		h[i] ^= o[i]
	}
}

// MarshalText makes JSON show hashes as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses 32 hex characters.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*len(h) {
		return fmt.Errorf("hash: want 32 hex characters, got %d", len(b))
	}
	var v Hash
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	*h = v
	return nil
}
