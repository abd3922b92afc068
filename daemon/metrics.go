package daemon

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// metrics is the node's Prometheus registry, served on the API socket at
// /v1/metrics and, with metrics_addr, on TCP at /metrics.
type metrics struct {
	reg         *prometheus.Registry
	reads       prometheus.Counter
	writes      *prometheus.CounterVec
	writeErrors *prometheus.CounterVec
	*latency
}

func newMetrics(d *Daemon, first *instance) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ck_reads_total", Help: "Reads answered through the local API.",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ck_writes_total", Help: "Local writes stored, by op (set, del).",
		}, []string{"op"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ck_write_errors_total", Help: "Local writes refused, by op and API error code.",
		}, []string{"op", "code"}),
		latency: newLatency(),
	}
	reg.MustRegister(m.latency.collectors()...)
	reg.MustRegister(buildInfo(), newNodeCollector(d))
	reg.MustRegister(m.reads, m.writes, m.writeErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ck_keys", Help: "Live keys in the store."},
			func() float64 { return d.gauge(func(inst *instance) uint64 { return inst.store.Keys() }) }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_tombstones_purged_total",
			Help: "Tombstones purged at at + tombstone_ttl since the store opened."},
			func(s store.Stats) uint64 { return s.Purged }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_expired_total",
			Help: "Records with a TTL whose deadline passed on this node since the store opened (expire events)."},
			func(s store.Stats) uint64 { return s.Expired }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_commit_batches_total",
			Help: "Batches the store committed (group commits: local writes and received records together) since it opened; ck_commit_requests_total / this is the mean batch."},
			func(s store.Stats) uint64 { return s.Commits }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_commit_requests_total",
			Help: "Local writes, received records and clock reservations those batches carried."},
			func(s store.Stats) uint64 { return s.Requests }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_log_flushes_total",
			Help: "Flushes of the write-ahead log's batches into the data file since the store opened."},
			func(s store.Stats) uint64 { return s.Flushes }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ck_ttl_keys",
			Help: "Records with a TTL held, expired or not, until they are purged at at + ttl + tombstone_ttl."},
			func() float64 { return d.gauge(func(inst *instance) uint64 { return uint64(inst.store.TTLKeys()) }) }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_records_refused_total", Help: refusedHelp,
			ConstLabels: prometheus.Labels{"reason": "clock_jump"}},
			func(s store.Stats) uint64 { return s.RefusedClockJump }),
		d.storeCounter(prometheus.CounterOpts{Name: "ck_records_refused_total", Help: refusedHelp,
			ConstLabels: prometheus.Labels{"reason": "version_vector"}},
			func(s store.Stats) uint64 { return s.RefusedVV }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ck_purge_log_entries",
			Help: "Purged tombstones remembered (purge_log_ttl) to drop deleted values coming back."},
			func() float64 {
				return d.gauge(func(inst *instance) uint64 { return uint64(inst.store.PurgeLogLen()) })
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ck_lamport", Help: "This node's Lamport clock."},
			func() float64 { return d.gauge(func(inst *instance) uint64 { return inst.store.Lamport() }) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ck_insecure",
			Help: "1 when the cluster runs without a key by the operator's choice (insecure = true)."},
			func() float64 {
				if d.cfg.Cluster.Insecure && d.ring == nil { // both fixed at the start
					return 1
				}
				return 0
			}),
		newClusterCollector(d),
		newHookCollector(d.hooks),
	)
	if first.bridge != nil {
		reg.MustRegister(bridgeCollector{d: d, descs: first.bridge.Collector()})
	}
	return m
}

// refusedHelp describes ck_records_refused_total, one series per reason.
const refusedHelp = "Received or imported records refused as hostile, by reason (clock_jump: lamport too far ahead of the clock; version_vector: too large, or an entry above the lamport)."

// storeCounter is a counter read from the current instance's store
// counters (store.Stats), starting again from zero after a rejoin
// reopens the store, as after a restart.
func (d *Daemon) storeCounter(opts prometheus.CounterOpts, f func(store.Stats) uint64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(opts, func() float64 {
		return d.gauge(func(inst *instance) uint64 { return f(inst.store.Stats()) })
	})
}

// gauge reads a value of the current instance, waiting out a rejoin's
// swap; 0 once the daemon has closed.
func (d *Daemon) gauge(f func(*instance) uint64) float64 {
	inst, release := d.slot.await()
	defer release()
	if inst == nil {
		return 0
	}
	return float64(f(inst))
}

// writeFailed counts a refused write by its API code and returns err.
func (m *metrics) writeFailed(op string, err error) error {
	code := rpc.ErrInternal.Code
	var e *rpc.Error
	if errors.As(err, &e) {
		code = e.Code
	}
	m.writeErrors.WithLabelValues(op, code).Inc()
	return err
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// bridgeCollector collects the NATS bridge in place: a rejoin replaces it
// (its counters start again from zero then, as after a restart).
type bridgeCollector struct {
	d     *Daemon
	descs prometheus.Collector // the first bridge's: every bridge has the same
}

func (c bridgeCollector) Describe(ch chan<- *prometheus.Desc) { c.descs.Describe(ch) }

func (c bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	inst, release := c.d.slot.await()
	defer release()
	if inst != nil && inst.bridge != nil {
		inst.bridge.Collector().Collect(ch)
	}
}
