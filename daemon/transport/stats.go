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

	StreamsAccepted uint64
	StreamsRefused  uint64 // Streams() was full: closed at once
	StreamsDialed   uint64
}

type counters struct {
	sent, bytesSent, sendDropped, sendErrors                          atomic.Uint64
	received, bytesReceived, droppedSelf, droppedTooBig, droppedQueue atomic.Uint64
	streamsAccepted, streamsRefused, streamsDialed                    atomic.Uint64
}

// Stats returns the transport's counters.
func (u *UDP) Stats() Stats {
	c := &u.stats
	return Stats{
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
