package natstransport

import (
	"sync/atomic"

	"github.com/cloudknowledge/ck/daemon/transport"
)

type counters struct {
	sent, bytesSent, sendDropped, sendErrors                          atomic.Uint64
	received, bytesReceived, droppedSelf, droppedTooBig, droppedQueue atomic.Uint64
	streamsAccepted, streamsRefused, streamsDialed                    atomic.Uint64
	streamBytesSent, malformed                                        atomic.Uint64
}

// Stats returns the transport's counters, as the UDP transport's: the
// daemon's metrics read either. SendDropped counts datagrams (and resets)
// not sent because NATS was unreachable or the send queue was full;
// SendErrors, publishes nats.go refused.
func (t *Transport) Stats() transport.Stats {
	c := &t.stats
	return transport.Stats{
		DatagramsSent:     c.sent.Load(),
		BytesSent:         c.bytesSent.Load(),
		SendDropped:       c.sendDropped.Load(),
		SendErrors:        c.sendErrors.Load(),
		DatagramsReceived: c.received.Load(),
		BytesReceived:     c.bytesReceived.Load(),
		DroppedSelf:       c.droppedSelf.Load(),
		DroppedTooBig:     c.droppedTooBig.Load(),
		DroppedQueueFull:  c.droppedQueue.Load(),
		StreamsAccepted:   c.streamsAccepted.Load(),
		StreamsRefused:    c.streamsRefused.Load(),
		StreamsDialed:     c.streamsDialed.Load(),
	}
}

// Malformed counts received messages that were not of this transport's
// format (another version, a stray publisher): dropped, never answered.
func (t *Transport) Malformed() uint64 { return t.stats.malformed.Load() }
