// Package wire is the format of everything ckd nodes say to each other
// (docs/PROTOCOL.md, Wire format): the envelope, the messages, and the framing of streams. It
// encodes, decodes and checks; it decides nothing. The protocol code owns
// the timers, the peers and the store.
//
// # Frames
//
// Every message travels in one frame: a fixed 48-byte header (see
// HeaderSize) and a body, a type byte followed by a CBOR map with small
// integer keys, passed through a Sealer. A datagram is one frame; a stream
// is a sequence of frames, each behind a 4-byte length (WriteFrame,
// ReadFrame). The header is in the clear and names what a receiver needs
// before it can open the body: the key (key id), the sender, its boot
// epoch and a counter. With a key these pick the subkey and nonce and
// guard against replays — datagrams: per-sender subkey from (id, epoch),
// the counter as nonce, a window of seen counters per epoch; streams: the
// counter is the frame's sequence number, strictly one more each frame.
// Without a key the header carries the cluster's tag instead, which keeps
// clusters sharing a network apart but authenticates nothing: the sender
// id is then a claim.
//
// Decode checks from cheap to dear — length, magic, version, then the
// Sealer (cluster, key), then the body — and allocates nothing sized from
// the frame until the Sealer has accepted it and the CBOR decoder has found
// the body well formed (the direct reader of UPDATE and ACK, fastcodec.go,
// checks each count it allocates by against the bytes left instead). Whatever fails is dropped, counted under Reason(err)
// and never answered: an answer would make a node an amplifier, and tell a
// prober what it hit.
//
// # Compatibility
//
// The header's version byte is the protocol's major version: a frame of an
// unknown major is dropped with ErrVersion, which the caller logs once. A
// minor version may add fields (receivers ignore unknown keys) and message
// types (dropped as ErrType). So a field key or a type number is never
// reused or given a new meaning; a changed meaning is a new key.
//
// # Messages and who sends them
//
// HELLO: every node, to all, every heartbeat (and unicast, at once, to a
// member just heard). The receiver notes the peer (id, epoch, address),
// raises its Lamport clock to the peer's, starts a sync if the peer's Root
// differed in two consecutive HELLOs and Syncing (still bootstrapping) is
// not set, and logs a differing HookHash or TombstoneTTL. A HELLO with the receiver's own id
// and a newer epoch means a copied data dir ("duplicate node id"); an
// older one is a replay and is ignored. BYE: once, on a clean stop.
//
// UPDATE: the origin of a write, to all, as soon as the write is accepted,
// and again every 200 ms while a writer waits for acknowledgements; also a
// fresh read's read repair, unicast. The writes of one group commit share
// a datagram: the first is the UPDATE, the others ride in its More. When UpdateSize exceeds max_datagram
// the origin sends ANNOUNCE instead, and receivers that lack the version
// FETCH the key from its Holder. A receiver applies what is newer, resolves
// what is concurrent, ignores the rest — applying is idempotent, so
// duplicated, reordered and replayed messages change nothing — and, once
// its version of the key dominates or equals the write's, durably, sends
// ACK to the UPDATE's sender naming the write by (Key, Origin, Lamport).
//
// QUERY: a fresh read, to all, with an id the asker chose. Each node
// answers ANSWER, unicast: its version and hash, and the record when the
// answer still fits a datagram. The asker matches answers by (id, header
// sender), takes the newest, fetches it over a stream if no answer carried
// it, and repairs the nodes whose hash differed.
//
// On streams. FETCH is answered by FETCH_REPLY with the holder's current
// record, which may be newer than the version announced. A sync session
// (anti-entropy, and bootstrap, which is a sync into an empty tree) runs in
// turns, each ended by SYNC_DONE, the opener driving: it sends SYNC_TOP
// (its top digests); the other side answers SYNC_LEAVES for each differing
// top node (and SYNC_RECORDS with everything under the top nodes where the
// opener's digest is zero); then, one round per SYNC_LEAVES, the opener
// sends SYNC_KEYS for each differing leaf (its (key hash, record hash)
// entries; the records themselves where the other side's leaf is zero) and
// the other side answers with SYNC_RECORDS the opener lacks or holds under
// another hash and SYNC_KEYS naming the opener's entries it wants; the
// opener's last turn carries those, and a final SYNC_DONE from the other
// side closes the session. Records are applied like an UPDATE's, so each
// side sorts newer from older and resolves concurrent pairs. A SYNC_DONE
// with Refused, in answer to SYNC_TOP, declines the session. The cluster
// package's doc draws the turns.
//
// # Invariants checked here
//
// Encode and Decode both refuse (ErrMalformed): a HELLO or BYE whose id
// and epoch are not the header's, an ACK not from the header's sender, an
// UPDATE or ANSWER whose hash is not its record's, an ANNOUNCE whose key
// hash is not its key's, a FETCH_REPLY whose Found and Record disagree, a
// SYNC_KEYS entry outside its leaf, digests that are not exactly 256. Not
// checked here: key syntax, value size, lamport sanity (store.Apply does),
// nor whether a stream type arrived as a datagram (MsgType.Stream).
package wire
