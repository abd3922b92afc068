package daemon

import (
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/rpc"
)

// latencyBuckets span what a local API call, a commit, a replication ACK
// or a fresh read takes: from 100 µs (a get) to 10 s (a --wait at its
// timeout). Prometheus's default buckets start at 5 ms, where a local get
// would fall entirely into the first one.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latency is the node's latency histograms (docs/ARCHITECTURE.md,
// "Metrics").
type latency struct {
	api    *prometheus.HistogramVec
	commit prometheus.Histogram
	ack    prometheus.Histogram
	fresh  prometheus.Histogram
}

func newLatency() *latency {
	h := func(name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}
	}
	return &latency{
		api: prometheus.NewHistogramVec(h("ck_api_request_duration_seconds",
			"Local API requests, by route (a path of the API; keys and ids are never labels) and method; for watch, export and import the stream's life."),
			[]string{"route", "method"}),
		commit: prometheus.NewHistogram(h("ck_commit_duration_seconds",
			"Local writes (set, del; not their --wait) from the store call to the durable commit.")),
		ack: prometheus.NewHistogram(h("ck_replication_ack_duration_seconds",
			"Writes with --wait N: from sending the record to its Nth acknowledgement; waits that fell short are not observed.")),
		fresh: prometheus.NewHistogram(h("ck_fresh_read_duration_seconds",
			"Fresh reads (get --fresh, and a joining node's reads of keys it lacks): from asking the peers to the answer.")),
	}
}

func (l *latency) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.api, l.commit, l.ack, l.fresh}
}

// observeAPI is the API server's Observer.
func (l *latency) observeAPI(route, method string, took time.Duration) {
	l.api.WithLabelValues(route, method).Observe(took.Seconds())
}

// since observes the time since start in h.
func since(h prometheus.Histogram, start time.Time) { h.Observe(time.Since(start).Seconds()) }

// buildInfo is the constant ck_build_info{version,commit,goversion} 1.
func buildInfo() prometheus.Collector {
	commit, goversion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goversion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				commit = s.Value
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "ck_build_info",
		Help:        "Always 1; the labels say which ckd runs: its version, its VCS commit (\"unknown\" when built outside a checkout) and Go version.",
		ConstLabels: prometheus.Labels{"version": rpc.Version, "commit": commit, "goversion": goversion},
	}, func() float64 { return 1 })
}

// memberStates are the states ck_members always reports, zeros included,
// so that a graph of each state has a series from the start.
var memberStates = []cluster.State{cluster.Alive, cluster.Suspect, cluster.Gone, cluster.Left, cluster.Quarantined}

// nodeCollector exports gauges read from the node and the store at scrape
// time: members by state (this node counted, as in status) and the
// store's file sizes.
type nodeCollector struct {
	d                *Daemon
	members, storeSz *prometheus.Desc
}

func newNodeCollector(d *Daemon) *nodeCollector {
	return &nodeCollector{
		d: d,
		members: prometheus.NewDesc("ck_members",
			"Cluster members this node knows, itself included, by state (alive, suspect, gone, left, quarantined).", []string{"state"}, nil),
		storeSz: prometheus.NewDesc("ck_store_size_bytes",
			"The store's files, by file (data: the bbolt file; log: the write-ahead log's ring, allocated whole).", []string{"file"}, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.members; ch <- c.storeSz }

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	inst, release := c.d.slot.await() // a rejoin swaps the store and the node
	defer release()
	if inst == nil {
		return
	}
	counts := memberCounts(inst.node.Members())
	for _, s := range memberStates {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(counts[string(s)]), string(s))
	}
	if data, log, err := inst.store.FileSizes(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.storeSz, prometheus.GaugeValue, float64(data), "data")
		ch <- prometheus.MustNewConstMetric(c.storeSz, prometheus.GaugeValue, float64(log), "log")
	}
}
