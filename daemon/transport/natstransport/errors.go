package natstransport

import "errors"

var (
	// ErrBroken is returned by a stream's Read and Write once messages were
	// lost (a gap in the offsets), the peer overran its window, or this
	// node's connection to NATS was lost while the stream was open. What
	// was read before it is intact; the rest of the stream is not
	// delivered.
	ErrBroken = errors.New("stream broken")

	// ErrReset is returned by a stream's Read and Write when the peer
	// aborted the stream, or no longer knows it.
	ErrReset = errors.New("stream reset by peer")

	// ErrRefused is returned by Dial when nobody listens on the address
	// (NATS has no responder for its inbox) or the node refused the stream
	// (its queue of new streams was full).
	ErrRefused = errors.New("stream refused")
)

// Reasons a received message is dropped (counted, never answered).
var (
	errShort  = errors.New("short message")
	errFormat = errors.New("unknown message format")
)
