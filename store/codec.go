package store

import (
	"crypto/sha256"
	"fmt"
	"github.com/cloudknowledge/ck/internal/cborlite"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR modes. Records are stored exactly as their canonical encoding, so
// a record's hash is the SHA-256 of its stored bytes and opening a store
// rebuilds the digest tree without re-encoding anything.
var (
	// encMode is deterministic (RFC 8949 core deterministic: shortest
	// integers, map keys sorted bytewise) and writes nil slices and maps as
	// empty ones, so equal records give equal bytes on every node.
	encMode = mustEncMode(func() cbor.EncOptions {
		o := cbor.CoreDetEncOptions()
		o.NilContainers = cbor.NilContainerAsEmpty
		return o
	}())
	// decMode refuses anything a well-behaved encoder does not produce:
	// unknown fields (a field this code would drop from the hash), duplicate
	// keys, tags, indefinite lengths, invalid UTF-8, deep nesting.
	decMode = mustDecMode(cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   8,
		MaxArrayElements:  16,
		MaxMapPairs:       1 << 16, // version vector entries: nodes ever written
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	})
	// headMode decodes the few fields Open and List need and skips the rest.
	headMode = mustDecMode(cbor.DecOptions{
		MaxNestedLevels:  8,
		MaxArrayElements: 16,
		MaxMapPairs:      1 << 16,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
	})
)

func mustEncMode(o cbor.EncOptions) cbor.EncMode {
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

// recordWire is a Record as CBOR: a map with small integer keys (compact,
// and a later optional field can be added without changing old hashes).
// Every field is always present so the hash covers all of them, except
// ttl, which a record without one leaves out (so its bytes and hash are
// those of format 1.0).
type recordWire struct {
	Key       string    `cbor:"1,keyasint"`
	Value     []byte    `cbor:"2,keyasint"`
	Deleted   bool      `cbor:"3,keyasint"`
	VV        VV        `cbor:"4,keyasint"`
	Lamport   uint64    `cbor:"5,keyasint"`
	Origin    NodeID    `cbor:"6,keyasint"`
	LWW       stampWire `cbor:"7,keyasint"`
	At        int64     `cbor:"8,keyasint"`
	Fallback  bool      `cbor:"9,keyasint"`
	TTL       int64     `cbor:"10,keyasint,omitempty"` // only when set: records without one keep their bytes
	Ephemeral uint64    `cbor:"11,keyasint,omitempty"` // likewise
}

type stampWire struct {
	_       struct{} `cbor:",toarray"`
	Lamport uint64
	Origin  NodeID
}

// recordHead is the part of a stored record that Open and List look at.
type recordHead struct {
	Deleted bool   `cbor:"3,keyasint"`
	Lamport uint64 `cbor:"5,keyasint"`
	Origin  NodeID `cbor:"6,keyasint"`
	At      int64  `cbor:"8,keyasint"`
	TTL     int64  `cbor:"10,keyasint"`
	Eph     uint64 `cbor:"11,keyasint"`
}

// MarshalCBOR encodes r canonically: the bytes its Hash is taken over and
// the bytes the store keeps. Messages that embed a Record get the same form.
func (r Record) MarshalCBOR() ([]byte, error) {
	return appendRecord(make([]byte, 0, 128+len(r.Key)+len(r.Value)+27*len(r.VV)), &r), nil
}

// marshalReflect is MarshalCBOR by the cbor package: the definition
// appendRecord must match.
func (r Record) marshalReflect() ([]byte, error) {
	return encMode.Marshal(recordWire{
		Key: r.Key, Value: r.Value, Deleted: r.Deleted, VV: r.VV.normalized(),
		Lamport: r.Lamport, Origin: r.Origin,
		LWW: stampWire{Lamport: r.LWW.Lamport, Origin: r.LWW.Origin},
		At:  r.At, Fallback: r.Fallback, TTL: r.TTL, Ephemeral: r.Ephemeral,
	})
}

// UnmarshalCBOR decodes a record strictly (see decMode). It does not
// validate the key or the value's size: Apply does.
func (r *Record) UnmarshalCBOR(b []byte) error {
	if rec, ok := parseRecord(b, true); ok {
		*r = rec
		return nil
	}
	return r.unmarshalReflect(b)
}

func (r *Record) unmarshalReflect(b []byte) error {
	var w recordWire
	if err := decMode.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	*r = Record{
		Key: w.Key, Value: w.Value, Deleted: w.Deleted, VV: w.VV,
		Lamport: w.Lamport, Origin: w.Origin,
		LWW: Stamp{Lamport: w.LWW.Lamport, Origin: w.LWW.Origin},
		At:  w.At, Fallback: w.Fallback, TTL: w.TTL, Ephemeral: w.Ephemeral,
	}
	return nil
}

var (
	_ cbor.Marshaler   = Record{}
	_ cbor.Unmarshaler = (*Record)(nil)
)

// encodeRecord is MarshalCBOR for callers that cannot get an error: every
// field has a type the encoder always handles.
func encodeRecord(r *Record) []byte {
	b, err := r.MarshalCBOR()
	if err != nil {
		panic("store: encoding a record: " + err.Error())
	}
	return b
}

// Encoded returns r's canonical encoding (MarshalCBOR) and its hash
// (Hash), computed once for both.
func (r *Record) Encoded() (raw []byte, h Hash) {
	raw = encodeRecord(r)
	return raw, hashBytes(raw)
}

func hashBytes(b []byte) Hash {
	sum := sha256.Sum256(b)
	var h Hash
	copy(h[:], sum[:])
	return h
}

// eventWire is a change-log entry; its index is the bucket key.
type eventWire struct {
	_       struct{} `cbor:",toarray"`
	Op      Op
	Key     string
	Version uint64
	Origin  NodeID
}

// recordMeta is a stored record without its value: what a write needs to
// know about the record it replaces, and what List returns without values,
// decoded without copying a value of up to 64 MiB.
type recordMeta struct {
	Key       string    `cbor:"1,keyasint"`
	Deleted   bool      `cbor:"3,keyasint"`
	VV        VV        `cbor:"4,keyasint"`
	Lamport   uint64    `cbor:"5,keyasint"`
	Origin    NodeID    `cbor:"6,keyasint"`
	LWW       stampWire `cbor:"7,keyasint"`
	At        int64     `cbor:"8,keyasint"`
	Fallback  bool      `cbor:"9,keyasint"`
	TTL       int64     `cbor:"10,keyasint"`
	Ephemeral uint64    `cbor:"11,keyasint"`
}

// decodeHead decodes what Open needs of a stored record.
func decodeHead(b []byte) (recordHead, error) {
	if rec, ok := parseRecord(b, false); ok {
		return recordHead{Deleted: rec.Deleted, Lamport: rec.Lamport, Origin: rec.Origin, At: rec.At, TTL: rec.TTL, Eph: rec.Ephemeral}, nil
	}
	var h recordHead
	err := headMode.Unmarshal(b, &h)
	return h, err
}

// decodeMeta decodes a stored record without its value.
func decodeMeta(b []byte) (Record, error) { return decodeMetaOf("", b) }

// decodeMetaOf is decodeMeta of the record stored under key: its Key is
// key itself when it matches (no copy).
func decodeMetaOf(key string, b []byte) (Record, error) {
	if rec, ok := parseRecordOf(key, b, false); ok {
		return rec, nil
	}
	var w recordMeta
	if err := headMode.Unmarshal(b, &w); err != nil {
		return Record{}, fmt.Errorf("record: %w", err)
	}
	return Record{
		Key: w.Key, Deleted: w.Deleted, VV: w.VV, Lamport: w.Lamport, Origin: w.Origin,
		LWW: Stamp{Lamport: w.LWW.Lamport, Origin: w.LWW.Origin},
		At:  w.At, Fallback: w.Fallback, TTL: w.TTL, Ephemeral: w.Ephemeral,
	}, nil
}

// tombHead is what the tombstone index needs of a record: tombstones and
// records with a TTL are indexed at At + TTL (purge.go, ttl.go).
type tombHead struct {
	Deleted bool
	At      int64
	TTL     int64
}

// indexed reports whether the record is in the tombstone index.
func (h tombHead) indexed() bool { return h.Deleted || h.TTL > 0 }

// decodeHeadAt decodes whether a stored record is a tombstone, and its At.
// A flush asks this of every record it writes and replaces, so a live
// record in the canonical layout is recognised from its first fields
// without decoding the rest.
func decodeHeadAt(b []byte) (tombHead, error) {
	p := parser{cborlite.NewReader(b)}
	p.expect(cborlite.Map | 9)
	p.expect(1)
	p.Bytes(p.Head(cborlite.Text))
	p.expect(2)
	p.Bytes(p.Head(cborlite.Bytes))
	p.expect(3)
	if deleted := p.Bool(); p.OK && !deleted {
		return tombHead{}, nil
	}
	m, err := decodeMeta(b)
	return tombHead{Deleted: m.Deleted, At: m.At, TTL: m.TTL}, err
}
