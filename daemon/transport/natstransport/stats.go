package natstransport

import (
	"sync/atomic"

	"github.com/cloudknowledge/ck/daemon/transport"
)

type counters struct {
	transport.Counters
	streamBytesSent, malformed atomic.Uint64
}

// Stats returns the transport's counters, as the UDP transport's: the
// daemon's metrics read either. SendDropped counts datagrams (and resets)
// not sent because NATS was unreachable or the send queue was full;
// SendErrors, publishes nats.go refused.
func (t *Transport) Stats() transport.Stats { return t.stats.Snapshot() }

// Malformed counts received messages that were not of this transport's
// format (another version, a stray publisher): dropped, never answered.
func (t *Transport) Malformed() uint64 { return t.stats.malformed.Load() }
