package natsbridge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the bridge's counters (since New) and gauges. Once nothing is
// in flight (Queued and Unconfirmed both 0):
//
//	Changes = Published + Dropped + Skipped + Superseded
type Stats struct {
	State string // as State()

	// Publishing.
	Changes       uint64 // change-log events the publish mode selected
	Published     uint64 // changes the server confirmed it received (PING/PONG after them)
	Dropped       uint64 // changes given up: reconnect buffer full, unreadable, too big, unconfirmed at stop
	DroppedBuffer uint64 // of Dropped: refused because the reconnect buffer (buffer_bytes) was full
	DroppedAtStop uint64 // of Dropped: still unconfirmed when the bridge stopped (may have arrived)
	Skipped       uint64 // events whose record had already moved on (latest wins) or was purged
	Superseded    uint64 // messages lost to a reconnect, not resent as a later change to the key was in flight
	Republished   uint64 // messages resent after a reconnect: possible duplicates (same Nats-Msg-Id)
	Truncated     uint64 // changes published headers-only (value over the server's max payload)
	Missed        uint64 // change-log events never seen: the bridge fell behind watch_history
	Unconfirmed   int    // messages handed to NATS (or held before the first connection), not yet confirmed
	BufferedBytes int    // bytes in nats.go's outbound buffer (the reconnect buffer while disconnected)

	// Inbound writes.
	Received    uint64 // messages on <prefix>.set.> and <prefix>.del.>
	Writes      uint64 // of those, writes stored
	WriteErrors uint64 // of those, refused (bad subject, bad key, hook, ...), answered with the error

	Connects uint64 // successful connections, the first included
	Errors   uint64 // asynchronous NATS errors, failed reads of the change log, failed replies
}

type counters struct {
	changes, published, dropped, droppedBuffer, droppedAtStop atomic.Uint64
	skipped, superseded, republished, truncated, missed       atomic.Uint64
	received, writes, writeErrors, connects, errors           atomic.Uint64
}

// Stats returns the counters now.
func (b *Bridge) Stats() Stats {
	s := Stats{
		State:         b.State(),
		Changes:       b.st.changes.Load(),
		Published:     b.st.published.Load(),
		Dropped:       b.st.dropped.Load(),
		DroppedBuffer: b.st.droppedBuffer.Load(),
		DroppedAtStop: b.st.droppedAtStop.Load(),
		Skipped:       b.st.skipped.Load(),
		Superseded:    b.st.superseded.Load(),
		Republished:   b.st.republished.Load(),
		Truncated:     b.st.truncated.Load(),
		Missed:        b.st.missed.Load(),
		Unconfirmed:   b.out.len(),
		Received:      b.st.received.Load(),
		Writes:        b.st.writes.Load(),
		WriteErrors:   b.st.writeErrors.Load(),
		Connects:      b.st.connects.Load(),
		Errors:        b.st.errors.Load(),
	}
	if nc := b.conn.Load(); nc != nil {
		s.BufferedBytes, _ = nc.Buffered()
	}
	return s
}

// Collector exports Stats as Prometheus metrics (ck_nats_*), read at
// scrape time. Register it once with the daemon's registry.
func (b *Bridge) Collector() prometheus.Collector { return &collector{b: b, descs: newDescs()} }

type descs struct {
	messages, inbound, errors, connects, connected, unconfirmed, buffered *prometheus.Desc
}

func newDescs() descs {
	return descs{
		messages: prometheus.NewDesc("ck_nats_changes_total",
			"Changes the NATS bridge handled, by outcome (selected, published, dropped, dropped_buffer, dropped_at_stop, skipped, superseded, republished, truncated, missed).",
			[]string{"outcome"}, nil),
		inbound: prometheus.NewDesc("ck_nats_inbound_total",
			"Writes received on NATS set/del subjects, by result (received, stored, refused).", []string{"result"}, nil),
		errors:   prometheus.NewDesc("ck_nats_errors_total", "Asynchronous NATS errors and failed change-log reads.", nil, nil),
		connects: prometheus.NewDesc("ck_nats_connects_total", "Successful NATS connections, the first included.", nil, nil),
		connected: prometheus.NewDesc("ck_nats_connected",
			"1 while the NATS bridge is connected, else 0; the state label says how it is.", []string{"state"}, nil),
		unconfirmed: prometheus.NewDesc("ck_nats_unconfirmed_messages", "Messages handed to NATS and not yet confirmed.", nil, nil),
		buffered:    prometheus.NewDesc("ck_nats_buffered_bytes", "Bytes in the NATS outbound (reconnect) buffer.", nil, nil),
	}
}

type collector struct {
	b     *Bridge
	descs descs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, x := range []*prometheus.Desc{d.messages, d.inbound, d.errors, d.connects, d.connected, d.unconfirmed, d.buffered} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s, d := c.b.Stats(), c.descs
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	for outcome, v := range map[string]uint64{
		"selected": s.Changes, "published": s.Published, "dropped": s.Dropped, "dropped_buffer": s.DroppedBuffer,
		"dropped_at_stop": s.DroppedAtStop, "skipped": s.Skipped, "superseded": s.Superseded,
		"republished": s.Republished, "truncated": s.Truncated, "missed": s.Missed,
	} {
		counter(d.messages, v, outcome)
	}
	counter(d.inbound, s.Received, "received")
	counter(d.inbound, s.Writes, "stored")
	counter(d.inbound, s.WriteErrors, "refused")
	counter(d.errors, s.Errors)
	counter(d.connects, s.Connects)
	up := 0.0
	if s.State == "connected" {
		up = 1
	}
	gauge(d.connected, up, s.State)
	gauge(d.unconfirmed, float64(s.Unconfirmed))
	gauge(d.buffered, float64(s.BufferedBytes))
}
