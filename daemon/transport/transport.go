// Package transport defines how ckd nodes exchange bytes: best-effort
// datagrams for the gossip-sized messages (HELLO, UPDATE, QUERY, ACK) and
// reliable streams for what does not fit one (fetches, sync sessions,
// bootstrap). Implementations — multicast, broadcast, static peers, NATS and
// the simulated network of the tests — live beside this file; the protocol
// code sees only these interfaces.
package transport

import (
	"context"
	"net"
	"net/netip"
)

// Packet is one received datagram.
//
// Buf belongs to the receiver once delivered: the transport never touches
// it again, so the protocol may keep slices of it.
type Packet struct {
	From netip.AddrPort // the sender's unicast address, as seen on the wire
	Buf  []byte
}

// Transport carries one node's traffic. Implementations must be safe for
// concurrent use.
type Transport interface {
	// Addr is this node's unicast address, advertised in HELLO so that
	// peers can answer and open streams to it.
	Addr() netip.AddrPort

	// Broadcast sends b to every node of the cluster (multicast group,
	// broadcast address, every static peer, a NATS subject). Best effort:
	// it does not block on the network and may drop. b may be reused by the
	// caller as soon as Broadcast returns.
	Broadcast(b []byte) error

	// SendTo sends b to one node's unicast address. Same contract as
	// Broadcast.
	SendTo(to netip.AddrPort, b []byte) error

	// Packets delivers received datagrams. The channel is closed by Close.
	// A slow reader makes the transport drop (and count) datagrams rather
	// than block the network.
	Packets() <-chan Packet

	// Dial opens a reliable stream to a node's unicast address. It blocks
	// until connected or ctx ends.
	Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error)

	// Streams delivers streams peers opened to this node. The receiver owns
	// each conn and must close it. The channel is closed by Close.
	Streams() <-chan net.Conn

	// Close stops the transport and releases its sockets. Safe to call
	// twice.
	Close() error
}

// Direct is a Transport that can hand each received datagram to a
// function on the goroutine that read it, instead of queueing it on
// Packets for another goroutine to take: a datagram then costs no
// goroutine hand-off (on a loaded host, a thread wake-up) between the
// socket and the protocol (docs/ARCHITECTURE.md, "Overlapped
// replication"). transport.UDP implements it.
type Direct interface {
	Transport
	// Deliver makes the transport call fn with every datagram read from
	// now on, instead of sending it on Packets; datagrams queued on
	// Packets before stay there. fn may be called from several goroutines
	// at once (one per socket) and owns Packet.Buf as a Packets reader
	// does. While fn runs, that socket's datagrams wait in its receive
	// buffer, and beyond it the kernel drops them (Stats.DroppedKernel),
	// as a full Packets would: fn must not block for long. Close still
	// closes Packets, once no fn call is running.
	Deliver(fn func(Packet))
}
