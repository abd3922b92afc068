package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// clusterCollector exports the transport's and the protocol's counters,
// read at scrape time: datagrams and bytes sent and received, drops by
// reason, records applied by outcome.
type clusterCollector struct {
	d *Daemon

	datagrams, self, bytes, drops, records, streams *prometheus.Desc
	reads, sessions, syncRecords                    *prometheus.Desc
}

func newClusterCollector(d *Daemon) *clusterCollector {
	return &clusterCollector{
		d: d,
		datagrams: prometheus.NewDesc("ck_datagrams_total",
			"Cluster datagrams, by direction (sent, received).", []string{"direction"}, nil),
		self: prometheus.NewDesc("ck_datagrams_self_total",
			"This node's own multicast or broadcast datagrams, looped back to it and ignored: counted in ck_datagrams_total{direction=\"received\"}, not a drop.", nil, nil),
		bytes: prometheus.NewDesc("ck_datagram_bytes_total",
			"Cluster datagram bytes, by direction (sent, received).", []string{"direction"}, nil),
		drops: prometheus.NewDesc("ck_datagrams_dropped_total",
			"Datagrams dropped, by reason: transport (too_big, queue_full, send_buffer, kernel) and protocol (short, magic, version, cluster, key, malformed, hash, ...).",
			[]string{"reason"}, nil),
		records: prometheus.NewDesc("ck_replicated_records_total",
			"Records received from peers, by outcome (applied, ignored, conflict, dropped: expired tombstones and deleted values coming back).", []string{"outcome"}, nil),
		streams: prometheus.NewDesc("ck_streams_total",
			"Cluster streams, by event (accepted, refused, dialed).", []string{"event"}, nil),
		reads: prometheus.NewDesc("ck_fresh_reads_total",
			"Fresh reads, by event (query: asked; repair: an answerer pushed the newer record).", []string{"event"}, nil),
		sessions: prometheus.NewDesc("ck_sync_sessions_total",
			"Anti-entropy sessions, by outcome (opened, completed, failed, refused; empty: completed, repairing nothing; served, declined for peers).",
			[]string{"outcome"}, nil),
		syncRecords: prometheus.NewDesc("ck_sync_records_total",
			"Records moved by anti-entropy and bootstrap, by direction (in, out).", []string{"direction"}, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.datagrams, c.self, c.bytes, c.drops, c.records, c.streams, c.reads, c.sessions, c.syncRecords} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	inst, release := c.d.slot.await() // a rejoin swaps the transport and the node
	defer release()
	if inst == nil {
		return
	}
	t := inst.transport.Stats()
	counter(c.datagrams, t.DatagramsSent, "sent")
	counter(c.datagrams, t.DatagramsReceived, "received")
	counter(c.bytes, t.BytesSent, "sent")
	counter(c.bytes, t.BytesReceived, "received")
	ch <- prometheus.MustNewConstMetric(c.self, prometheus.CounterValue, float64(t.DroppedSelf))
	counter(c.drops, t.DroppedTooBig, "too_big")
	counter(c.drops, t.DroppedQueueFull, "queue_full")
	counter(c.drops, t.SendDropped, "send_buffer")
	counter(c.drops, t.DroppedKernel, "kernel") // scale: SO_RXQ_OVFL
	counter(c.streams, t.StreamsAccepted, "accepted")
	counter(c.streams, t.StreamsRefused, "refused")
	counter(c.streams, t.StreamsDialed, "dialed")
	s := inst.node.Stats()
	for reason, n := range s.Dropped {
		counter(c.drops, n, reason)
	}
	counter(c.records, s.Applied, "applied")
	counter(c.records, s.Ignored, "ignored")
	counter(c.records, s.Conflicts, "conflict")
	counter(c.records, s.DroppedRecords, "dropped")
	counter(c.reads, s.Queries, "query")
	counter(c.reads, s.ReadRepairs, "repair")
	for outcome, v := range map[string]uint64{"opened": s.SyncOpened, "completed": s.SyncCompleted,
		"failed": s.SyncFailed, "refused": s.SyncRefused, "served": s.SyncServed, "declined": s.SyncDeclined,
		"empty": s.SyncEmpty} { // scale: completed, repairing nothing
		counter(c.sessions, v, outcome)
	}
	counter(c.syncRecords, s.SyncRecordsIn, "in")
	counter(c.syncRecords, s.SyncRecordsOut, "out")
}
