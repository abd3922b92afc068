package transport

import "sync/atomic"

// Stats is a snapshot of a UDP transport's counters, all monotonic.
// Received datagrams are counted as they are read, before the drops; so
// delivered = DatagramsReceived - DroppedSelf - DroppedTooBig -
// DroppedQueueFull.
type Stats struct {
	DatagramsSent uint64
	BytesSent     uint64
	SendDropped   uint64 // socket buffer full: not sent, no error returned
	SendErrors    uint64 // sends that returned an error

	DatagramsReceived uint64
	BytesReceived     uint64 // of what was read; a truncated datagram counts MaxDatagram+1
	DroppedSelf       uint64 // our own broadcast looping back
	DroppedTooBig     uint64 // longer than MaxDatagram
	DroppedQueueFull  uint64 // Packets() was full
	// DroppedKernel: datagrams the kernel dropped before we read them, its
	// socket receive buffer full (SO_RXQ_OVFL; Linux UDP only, else 0).
	DroppedKernel uint64

	StreamsAccepted uint64
	StreamsRefused  uint64 // Streams() was full: closed at once
	StreamsDialed   uint64
}

// Counters are a transport's live counters; every transport of this
// package and natstransport keeps them the same way.
type Counters struct {
	Sent, BytesSent, SendDropped, SendErrors                          atomic.Uint64
	Received, BytesReceived, DroppedSelf, DroppedTooBig, DroppedQueue atomic.Uint64
	DroppedKernel                                                     atomic.Uint64
	StreamsAccepted, StreamsRefused, StreamsDialed                    atomic.Uint64
}

// Snapshot returns the counters' values.
func (c *Counters) Snapshot() Stats {
	return Stats{
		DatagramsSent:     c.Sent.Load(),
		BytesSent:         c.BytesSent.Load(),
		SendDropped:       c.SendDropped.Load(),
		SendErrors:        c.SendErrors.Load(),
		DatagramsReceived: c.Received.Load(),
		BytesReceived:     c.BytesReceived.Load(),
		DroppedSelf:       c.DroppedSelf.Load(),
		DroppedTooBig:     c.DroppedTooBig.Load(),
		DroppedQueueFull:  c.DroppedQueue.Load(),
		DroppedKernel:     c.DroppedKernel.Load(),
		StreamsAccepted:   c.StreamsAccepted.Load(),
		StreamsRefused:    c.StreamsRefused.Load(),
		StreamsDialed:     c.StreamsDialed.Load(),
	}
}

// Stats returns the transport's counters.
func (u *UDP) Stats() Stats { return u.stats.Snapshot() }
