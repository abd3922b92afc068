package wire

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cloudknowledge/ck/store"
)

// MsgType is the first byte of a body. The values are the wire's: never
// renumber one, only add. Types below 16 travel as datagrams, the others on
// streams.
type MsgType uint8

// The message types.
const (
	TypeHello    MsgType = 1
	TypeBye      MsgType = 2
	TypeUpdate   MsgType = 3
	TypeAnnounce MsgType = 4
	TypeAck      MsgType = 5
	TypeQuery    MsgType = 6
	TypeAnswer   MsgType = 7

	TypeFetch       MsgType = 16
	TypeFetchReply  MsgType = 17
	TypeSyncTop     MsgType = 18
	TypeSyncLeaves  MsgType = 19
	TypeSyncKeys    MsgType = 20
	TypeSyncRecords MsgType = 21
	TypeSyncDone    MsgType = 22
)

// Stream reports whether messages of type t belong on a stream, not in a
// datagram. A receiver drops a stream message that arrives as a datagram.
func (t MsgType) Stream() bool { return t >= 16 }

func (t MsgType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

var typeNames = [...]string{
	TypeHello: "HELLO", TypeBye: "BYE", TypeUpdate: "UPDATE", TypeAnnounce: "ANNOUNCE",
	TypeAck: "ACK", TypeQuery: "QUERY", TypeAnswer: "ANSWER", TypeFetch: "FETCH",
	TypeFetchReply: "FETCH_REPLY", TypeSyncTop: "SYNC_TOP", TypeSyncLeaves: "SYNC_LEAVES",
	TypeSyncKeys: "SYNC_KEYS", TypeSyncRecords: "SYNC_RECORDS", TypeSyncDone: "SYNC_DONE",
}

// newMessage returns an empty message of type t to decode into, or nil.
func newMessage(t MsgType) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeBye:
		return new(Bye)
	case TypeUpdate:
		return new(Update)
	case TypeAnnounce:
		return new(Announce)
	case TypeAck:
		return new(Ack)
	case TypeQuery:
		return new(Query)
	case TypeAnswer:
		return new(Answer)
	case TypeFetch:
		return new(Fetch)
	case TypeFetchReply:
		return new(FetchReply)
	case TypeSyncTop:
		return new(SyncTop)
	case TypeSyncLeaves:
		return new(SyncLeaves)
	case TypeSyncKeys:
		return new(SyncKeys)
	case TypeSyncRecords:
		return new(SyncRecords)
	case TypeSyncDone:
		return new(SyncDone)
	}
	return nil
}

// Message is one of this package's message types, always as a pointer
// (*Hello, *Update, ...), so a type switch over Decode's result has one
// case per type. Only this package implements it: Decode must know every
// type it can return.
type Message interface {
	Type() MsgType
	// check enforces the message's invariants against its header; Encode
	// and Decode both run it, so a bug is caught at the sender.
	check(h Header) error
}

// Hello is the heartbeat: every node broadcasts one each heartbeat interval,
// and one at start so peers learn of it at once.
type Hello struct {
	ID           store.NodeID `cbor:"1,keyasint"`  // must equal the header's Sender
	Name         string       `cbor:"2,keyasint"`  // node_name, for people
	Epoch        uint64       `cbor:"3,keyasint"`  // must equal the header's Epoch
	Addr         string       `cbor:"4,keyasint"`  // unicast host:port for replies and streams
	Proto        uint16       `cbor:"5,keyasint"`  // Proto of the sender: major<<8 | minor
	Lamport      uint64       `cbor:"6,keyasint"`  // the sender's clock, raising the receiver's
	Keys         uint64       `cbor:"7,keyasint"`  // records held, tombstones included
	Root         [32]byte     `cbor:"8,keyasint"`  // digest tree root
	HookHash     string       `cbor:"9,keyasint"`  // hash of the hook scripts; a mismatch is logged
	TombstoneTTL int64        `cbor:"10,keyasint"` // ms; a mismatch is logged
	// Syncing says the sender is still bootstrapping: peers do not open
	// sync sessions to it (it pulls from one peer at a time, docs/PROTOCOL.md,
	// Bootstrap), though it serves the sessions others open.
	Syncing bool `cbor:"12,keyasint,omitempty"`
	// Interval is the time, in ms, until the sender's next HELLO (its
	// heartbeat, stretched in a large cluster: docs/ARCHITECTURE.md,
	// Heartbeats at scale). Receivers count suspect and gone in these
	// intervals. 0 (a sender written before the field) means the
	// receiver's own heartbeat, and keeps every node on it.
	Interval int64 `cbor:"13,keyasint,omitempty"`
	// Witnesses is the sender's fresh_witnesses: how many witnesses of
	// each key its writes wait for one ACK among (docs/PROTOCOL.md, Fresh
	// reads). 0 (off, or a sender written before the field) makes
	// receivers' fresh reads ask every node.
	Witnesses uint8 `cbor:"14,keyasint,omitempty"`
}

// Bye says the sender is stopping cleanly: mark it left, not suspect.
type Bye struct {
	ID    store.NodeID `cbor:"1,keyasint"` // must equal the header's Sender
	Epoch uint64       `cbor:"2,keyasint"` // must equal the header's Epoch
}

// Update carries a record to every node: a local write, a resend while the
// writer waits for acknowledgements, or a read repair. The write it stands
// for is (Record.Key, Record.Origin, Record.Lamport); ACKs name it so.
//
// More carries further writes in the same datagram (protocol 1.2): the
// writes of one group commit on the origin go out together, one sealed
// datagram of up to max_datagram instead of one each (docs/PROTOCOL.md,
// Replication). Each entry is a whole UPDATE with its own hash, ACK
// request and lifetime left, and no More of its own. A 1.1 receiver
// ignores the field and takes the first write only; the others reach it
// by the writer's resends (which go one write a datagram) or anti-entropy.
type Update struct {
	Record store.Record `cbor:"1,keyasint"`
	Hash   store.Hash   `cbor:"2,keyasint"` // Record.Hash(), checked on both sides
	AckRequest
	Left int64    `cbor:"5,keyasint,omitempty"` // Record.Left: ms of its TTL left at the sender (ttl.go)
	More []Update `cbor:"6,keyasint,omitempty"`
	// Follow says how many more datagrams of the same group commit the
	// sender sends right after this one (at most MaxFollow, the rest
	// unsaid), so that a receiver commits the whole batch at once
	// (docs/ARCHITECTURE.md, "Overlapped replication"). Only a datagram's
	// own UPDATE carries it; in More it is ignored. A receiver written
	// before the field ignores it and commits the datagrams as they come.
	Follow uint8 `cbor:"7,keyasint,omitempty"`
	// Raw is Record's canonical encoding (store.Record.MarshalCBOR),
	// whose hash is Hash; not on the wire. A sender may set it to what its
	// store computed for its log (store.Early): Encode then writes Raw as
	// the record and does not hash it again. Decode sets it to the
	// encoding it checked Hash against, for the receiver's store to take
	// as it is (store.Applier.ApplyHashed). Whoever changes Record must
	// clear it.
	Raw []byte `cbor:"-"`
}

// MaxFollow is the largest Update.Follow.
const MaxFollow = 255

// Updates returns u's writes: u itself, then the entries of More.
func (u *Update) Updates() []*Update {
	all := make([]*Update, 1, 1+len(u.More))
	all[0] = u
	for i := range u.More {
		all = append(all, &u.More[i])
	}
	return all
}

// AckRequest says which receivers of an UPDATE or ANNOUNCE answer ACK
// (docs/PROTOCOL.md, Replication). The zero value, what writers before
// these fields send, asks every receiver. NoAck asks none: nobody waits for
// the write (a plain write, a read repair). AckFrom asks only the listed
// nodes: a writer that waits for N ACKs asks a few peers, not the whole
// cluster, so that its fan-in does not grow with the cluster.
type AckRequest struct {
	NoAck   bool           `cbor:"3,keyasint,omitempty"`
	AckFrom []store.NodeID `cbor:"4,keyasint,omitempty"` // at most MaxAckFrom
}

// MaxAckFrom bounds AckRequest.AckFrom: a writer that would ask more asks
// everyone.
const MaxAckFrom = 16

// Wants reports whether the node id is asked to ACK.
func (r AckRequest) Wants(id store.NodeID) bool {
	if r.NoAck {
		return false
	}
	return len(r.AckFrom) == 0 || slices.Contains(r.AckFrom, id)
}

func (r AckRequest) check() error {
	switch {
	case r.NoAck && len(r.AckFrom) > 0:
		return errors.New("no_ack with ack_from")
	case len(r.AckFrom) > MaxAckFrom:
		return fmt.Errorf("ack_from lists %d nodes, more than %d", len(r.AckFrom), MaxAckFrom)
	}
	return nil
}

// NewUpdate returns the UPDATE carrying r.
func NewUpdate(r store.Record) *Update { return &Update{Record: r, Hash: r.Hash()} }

// Ack returns the ACK node from sends once its version of the key
// dominates or equals u's record.
func (u *Update) Ack(from store.NodeID) *Ack {
	return &Ack{Key: u.Record.Key, Origin: u.Record.Origin, Lamport: u.Record.Lamport, From: from}
}

// Announce stands for an Update too large for max_datagram: receivers that
// lack or hold older than (Lamport, Hash) fetch the key from Holder over a
// stream, then ACK (Key, Origin, Lamport) like an UPDATE's.
type Announce struct {
	KeyHash store.Hash   `cbor:"1,keyasint"` // store.KeyHash(Key), checked
	Key     string       `cbor:"2,keyasint"`
	Origin  store.NodeID `cbor:"3,keyasint"` // the write's, for the ACK
	Lamport uint64       `cbor:"4,keyasint"` // the write's
	Hash    store.Hash   `cbor:"5,keyasint"` // the record's
	Holder  string       `cbor:"6,keyasint"` // host:port to fetch from: the sender's Addr
	// Which receivers ACK, as an UPDATE's fields 3 and 4 (here 7 and 8).
	NoAck   bool           `cbor:"7,keyasint,omitempty"`
	AckFrom []store.NodeID `cbor:"8,keyasint,omitempty"`
}

// Acks returns the announce's AckRequest.
func (a *Announce) Acks() AckRequest { return AckRequest{NoAck: a.NoAck, AckFrom: a.AckFrom} }

// Ack says From holds, durably, the write (Key, Origin, Lamport) or a
// version descending from it, and each write of More likewise. It goes
// unicast to the UPDATE's sender. More coalesces the ACKs one receiver owes
// one writer at the same moment into one datagram; a receiver that
// ignores it (written before the field) takes the first write only, and
// the writer's resend asks again for the others.
type Ack struct {
	Key     string       `cbor:"1,keyasint"`
	Origin  store.NodeID `cbor:"2,keyasint"`
	Lamport uint64       `cbor:"3,keyasint"`
	From    store.NodeID `cbor:"4,keyasint"` // must equal the header's Sender
	More    []AckEntry   `cbor:"5,keyasint,omitempty"`
}

// AckEntry is one more write an ACK acknowledges.
type AckEntry struct {
	_       struct{} `cbor:",toarray"`
	Key     string
	Origin  store.NodeID
	Lamport uint64
}

// Query asks every node for its version of Key (a fresh read). HaveVV and
// HaveHash are the version the asker holds, both absent when it holds
// none: a node whose version is not newer answers with the version only,
// no record. A node that ignores them (written before the fields) answers
// with the record, as before.
type Query struct {
	ID       uint64      `cbor:"1,keyasint"` // the asker's; echoed in each Answer
	Key      string      `cbor:"2,keyasint"`
	HaveVV   store.VV    `cbor:"3,keyasint,omitempty"`
	HaveHash *store.Hash `cbor:"4,keyasint,omitempty"` // present exactly when HaveVV is
}

// Holds reports whether the asker holds a version of the key.
func (q *Query) Holds() bool { return q.HaveHash != nil }

// NotNewer reports whether a node holding vv and hash may answer q with
// its version only: the asker's version dominates or equals it. Equal
// version vectors with other hashes (never made by this protocol, but a
// peer's store could hold one) get the record.
func (q *Query) NotNewer(vv store.VV, hash store.Hash) bool {
	if !q.Holds() || !q.HaveVV.Dominates(vv) {
		return false
	}
	return !vv.Dominates(q.HaveVV) || hash == *q.HaveHash
}

// Answer is one node's reply to a Query, unicast to the asker. Found is
// false only when the node holds nothing for the key, not even a tombstone.
// Record is present when the answer still fits a datagram with it and the
// asker may lack it (Query.NotNewer); else the asker fetches the record
// over a stream if it needs it.
type Answer struct {
	ID      uint64        `cbor:"1,keyasint"`
	Found   bool          `cbor:"2,keyasint,omitempty"`
	Deleted bool          `cbor:"3,keyasint,omitempty"` // the version is a tombstone
	Lamport uint64        `cbor:"4,keyasint,omitempty"`
	VV      store.VV      `cbor:"5,keyasint,omitempty"`
	Hash    store.Hash    `cbor:"6,keyasint"`
	Record  *store.Record `cbor:"7,keyasint,omitempty"` // consistent with the fields above, checked
	Left    int64         `cbor:"8,keyasint,omitempty"` // Record.Left (ttl.go)
}

// Fetch asks a stream's other end for its current record of Key.
type Fetch struct {
	Key string `cbor:"1,keyasint"`
}

// FetchReply answers a Fetch: the holder's current record, whatever its
// version, or Found false.
type FetchReply struct {
	Found  bool          `cbor:"1,keyasint,omitempty"`
	Record *store.Record `cbor:"2,keyasint,omitempty"` // present exactly when Found
	Left   int64         `cbor:"3,keyasint,omitempty"` // Record.Left (ttl.go)
}

// SyncTop opens a sync session: the opener's 256 top digests. The other
// side does not answer with its own; it answers with what differs (see the
// package doc).
type SyncTop struct {
	Tops Digests `cbor:"1,keyasint"`
}

// SyncLeaves carries the sender's 256 leaf digests under top node Top, a
// top node whose digest differs between the two sides.
type SyncLeaves struct {
	Top    uint8   `cbor:"1,keyasint"`
	Leaves Digests `cbor:"2,keyasint"`
}

// SyncKeys lists records of leaf Leaf by (key hash, record hash): the
// opener's records of a differing leaf (empty when it holds none), or, from
// the other side, those of the opener's entries it wants sent (it lacks
// them or holds them under another hash).
type SyncKeys struct {
	Leaf    uint16     `cbor:"1,keyasint"`
	Entries []KeyEntry `cbor:"2,keyasint"` // every KeyHash is in Leaf, checked
}

// KeyEntry is one record in a SyncKeys list.
type KeyEntry struct {
	_       struct{}   `cbor:",toarray"`
	KeyHash store.Hash // store.KeyHash of the key
	Hash    store.Hash // the record's hash
}

// SyncRecords is a batch of records the receiver lacks or may hold older.
// The receiver applies each as if it had come in an UPDATE, without ACKs.
type SyncRecords struct {
	Records []store.Record `cbor:"1,keyasint"`
	// Left holds each record's Record.Left, in order, when any of them
	// has a TTL (ttl.go); else it is left out.
	Left []int64 `cbor:"2,keyasint,omitempty"`
}

// SyncDone ends the sender's turn in a sync session (the last one ends the
// session). As the answer to a SyncTop with Refused set, it declines the
// session (too many sessions served at once) and says why.
type SyncDone struct {
	Refused string `cbor:"1,keyasint,omitempty"`
}

func (*Hello) Type() MsgType       { return TypeHello }
func (*Bye) Type() MsgType         { return TypeBye }
func (*Update) Type() MsgType      { return TypeUpdate }
func (*Announce) Type() MsgType    { return TypeAnnounce }
func (*Ack) Type() MsgType         { return TypeAck }
func (*Query) Type() MsgType       { return TypeQuery }
func (*Answer) Type() MsgType      { return TypeAnswer }
func (*Fetch) Type() MsgType       { return TypeFetch }
func (*FetchReply) Type() MsgType  { return TypeFetchReply }
func (*SyncTop) Type() MsgType     { return TypeSyncTop }
func (*SyncLeaves) Type() MsgType  { return TypeSyncLeaves }
func (*SyncKeys) Type() MsgType    { return TypeSyncKeys }
func (*SyncRecords) Type() MsgType { return TypeSyncRecords }
func (*SyncDone) Type() MsgType    { return TypeSyncDone }
