// Package natstransport carries a cluster's own traffic over NATS
// (cluster { transport = "nats" }), so that one cluster can span every
// network a NATS system reaches. It implements transport.Transport: the
// protocol above it (daemon/cluster), and the sealing of datagrams and
// streams, are the same as on UDP; this package only moves bytes.
//
// # Addresses and subjects
//
// The cluster code keys peers by a netip.AddrPort and advertises it in
// HELLO, so each node takes a synthetic unicast address: a random IPv6
// unique local address (fd00::/8) and port, new at every start, as a UDP
// node with bind port 0 takes a new port. Its inbox is derived from it:
//
//	<base>.node.<32 hex digits of the address><4 of the port>   unicast datagrams and streams
//	<base>.all                                                  broadcasts
//
// where <base> is Config.Subject — the daemon uses
// "<subject_prefix>.cluster.<cluster name as a subject token>". A node
// subscribes to its inbox and to the broadcast subject, and its connection
// is opened with NoEcho, so its own broadcasts never come back.
//
// # Messages
//
// Every message starts with a 20-byte header: format version (1), kind,
// and the sender's synthetic address (16 bytes of IPv6, 2 of port, big
// endian). A datagram's payload follows: Packet.From is that address. A
// stream message has 24 more bytes: the receiver's stream id, the sender's
// stream id and one 64-bit value, then its payload:
//
//	open    value: the opener's receive window     sent as a NATS request
//	accept  value: the acceptor's receive window   the reply to open
//	data    value: offset of the payload's first byte in the stream
//	ack     value: bytes the receiver has consumed (cumulative)
//	fin     value: the final offset: no byte after it
//	reset   the stream is aborted (also: open refused, unknown stream)
//	ping    a liveness probe, sent as a request; answered by ping or reset
//
// Opening by request lets an open to an inbox nobody subscribes fail at
// once (NATS answers "no responders"), as a TCP connect is refused.
//
// # Streams
//
// A stream is a pair of stream ids, one per side, and flows of data
// messages of at most 64 KiB each way. NATS delivers the messages of one
// publisher in order, but may lose them (a slow consumer, a reconnect): a
// data or fin message whose offset is not the next expected one breaks the
// stream (ErrBroken) — never a silent hole. A sender keeps at most the
// receiver's window (1 MiB) unconsumed in flight, and the reader
// acknowledges every quarter window it consumes, so a slow reader slows the
// writer and never makes the NATS server or nats.go drop messages as a slow
// consumer. Close sends fin (reset if a Write is in progress): the peer
// reads what was sent, then io.EOF. A lost connection to NATS breaks every
// open stream on this node (a reset is queued for each peer, sent once
// reconnected); nats.go reconnects by itself. A stream that has heard
// nothing from its peer for 2 s pings it: a peer whose process died has no
// subscriber on its inbox left, NATS answers "no responders" at once, and
// the stream is reset, as TCP learns of a dead process from its kernel.
//
// Datagrams never block: Broadcast and SendTo queue the message for one
// sender goroutine, and drop it (Stats.SendDropped) when the queue is full
// or NATS is unreachable — stale HELLOs and UPDATEs are worth nothing once
// the connection is back, and the protocol resends what matters.
package natstransport
