package daemon

import "github.com/prometheus/client_golang/prometheus"

// hookCollector exports the Lua engine's counters and pool gauges.
type hookCollector struct {
	h      *hookSet
	events *prometheus.Desc
	pool   *prometheus.Desc
}

func newHookCollector(h *hookSet) *hookCollector {
	return &hookCollector{
		h: h,
		events: prometheus.NewDesc("ck_hook_events_total",
			"Lua hook calls and their failures, by event (call, rejection, error, timeout, heap_cancel, fallback, pool_exhausted, abandoned, log_dropped).",
			[]string{"event"}, nil),
		pool: prometheus.NewDesc("ck_hook_pool_states",
			"Lua states in the pool, by kind (busy, live, abandoned_running).", []string{"kind"}, nil),
	}
}

func (c *hookCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.events; ch <- c.pool }

func (c *hookCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	for event, v := range map[string]uint64{
		"call": s.Calls, "rejection": s.Rejections, "error": s.Errors, "timeout": s.Timeouts,
		"heap_cancel": s.HeapCancels, "fallback": s.Fallbacks, "pool_exhausted": s.PoolExhausted,
		"abandoned": s.Abandoned, "log_dropped": s.LogsDropped,
	} {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(v), event)
	}
	for kind, v := range map[string]int{"busy": s.PoolBusy, "live": s.PoolLive, "abandoned_running": s.AbandonedRunning} {
		ch <- prometheus.MustNewConstMetric(c.pool, prometheus.GaugeValue, float64(v), kind)
	}
}
