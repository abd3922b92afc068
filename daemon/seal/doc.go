// Package seal encrypts and authenticates what ckd nodes say to each
// other (docs/PROTOCOL.md, "Encryption and authentication"): a Keyring of
// cluster keys, Datagram — the keyed wire.Sealer — with its Replay filter,
// and the stream handshake (Client, Server) that turns a connection into
// a sealed Conn.
//
// # Keys
//
// A cluster key is 32 random bytes (base64 in the config or a keyring
// file). Its id, the first 4 bytes of its SHA-256, travels in the clear in
// every frame and hello so a receiver tries exactly the key named: a
// frame under an unknown id is refused before any cryptography, so a
// bogus frame costs one map lookup, or at most one AEAD attempt, whatever
// the size of the ring. Nothing is ever sealed under the cluster key
// itself; every AES-256-GCM key is derived from it with HKDF-SHA256
// (extract once per key, expand per use):
//
//	datagram subkey = HKDF(key, "dgram" ‖ sender id ‖ sender boot epoch)
//	stream keys     = HKDF(key, "stream" ‖ client id ‖ server id ‖
//	                  client nonce ‖ server nonce ‖ version ‖ cluster),
//	                  64 bytes: client→server ‖ server→client
//
// # Datagrams
//
// The nonce is 4 zero bytes ‖ the envelope's 8-byte counter. A nonce is
// never reused under one subkey: the subkey is the sender's for one boot
// epoch, the epoch is max(stored + 1, unix ms) and persisted before the
// first frame (so it never repeats, even after a crash or a clock step
// back), and within it the counter strictly increases. The authenticated
// data is the 48-byte envelope header — version, flags, key id, sender,
// epoch, counter, and the cluster tag, zero with a key — followed by the
// cluster name: a frame altered anywhere, moved to another sender, epoch
// or counter, or taken from another cluster sharing the key, fails.
//
// Why a replay is refused. Only a frame that authenticates reaches the
// Replay filter, so forgeries cannot move it. The filter keeps per sender
// the highest boot epoch seen and, in it, a window of the last WindowSize
// counters. A captured frame replayed
//   - at once, or while within the window: its counter's bit is set;
//   - later: its counter fell below the window;
//   - after its sender restarted: its epoch is older than the highest seen
//     (and the epoch cannot be changed without the key: it is in the
//     authenticated header and in the subkey);
//   - after the receiver restarted: the highest epoch and a counter at
//     least every accepted one (a reservation, saved before accepting past
//     it, in one write with every other active sender's) were persisted in
//     the EpochStore, and a new filter refuses every counter up to the
//     saved one in that epoch.
//
// # Streams
//
// Each side sends a hello in the clear — version, role, key id, node id, a
// fresh 32-byte random nonce — then a "finished" record, the first sealed
// record of its direction (the server's goes out with its first reply).
// Both directions' keys bind both hellos and the cluster name, so the
// finished record opens only for a peer that holds the key and saw the
// same handshake: the server proves the client before sending anything
// but its hello, and the client's first Read proves the server before
// returning data. A recorded session replayed to a server fails at the
// client's finished record: the server's nonce is new, so are the keys.
// Record n of a direction is sealed with n as nonce, so records cannot be
// dropped, repeated or reordered; an explicit sealed close record tells a
// clean end from a truncation.
//
// # Frames inside a stream
//
// A stream is sealed as a whole; the protocol's frames inside it need no
// sealing of their own: encode them with wire.Plaintext(cluster) and trust
// Conn.Peer, not the inner header's Sender, for who sent them.
package seal
