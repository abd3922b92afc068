package rpc

import (
	"context"
	"net/http"
)

// The health paths (README.md, The HTTP API; docs/ARCHITECTURE.md,
// "Liveness and readiness"), on the socket and on metrics_addr.
const (
	// PathHealth is the contract kept from the first release: 200 when the
	// node serves and has bootstrapped, else 503 with a code. It is the
	// readiness check under its old name.
	PathHealth = "/v1/health"
	// PathLive answers 200 while the process serves requests at all: it
	// never depends on peers, bootstrap or disk, so a liveness probe does
	// not kill a node that is joining or on a full disk.
	PathLive = "/v1/health/live"
	// PathReady answers as PathHealth: 200 when serving, bootstrapped and
	// the disk not full, else 503 syncing, shutting_down or disk_full.
	PathReady = "/v1/health/ready"
	// PathTCPMetrics is where metrics_addr serves the metrics.
	PathTCPMetrics = "/metrics"
)

// isHealthPath reports a path of the health checks.
func isHealthPath(path string) bool {
	return path == PathHealth || path == PathLive || path == PathReady
}

// handleLive answers the liveness check: reaching this handler is the
// whole test. It touches neither the store nor the node, which a rejoin
// may be swapping.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// ProbeHandler is what metrics_addr serves over TCP: the metrics at
// /metrics and the three health paths, GET only; any other path is 404
// unknown_path, so that a scraper or a probe pointed at the wrong path
// finds out rather than reading metrics everywhere.
func (s *Server) ProbeHandler(metrics http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		var h http.HandlerFunc
		switch {
		case path == PathTCPMetrics:
			h = metrics.ServeHTTP
		case path == PathLive:
			h = s.handleLive
		case isHealthPath(path):
			h = s.handleHealth
		default:
			writeError(w, Errorf(ErrUnknownPath, "unknown path %s: this listener serves %s, %s, %s and %s",
				path, PathTCPMetrics, PathHealth, PathLive, PathReady))
			return
		}
		if allow(w, r, http.MethodGet) {
			h(w, r)
		}
	})
}

// Live is nil while the daemon answers at all (GET /v1/health/live).
func (c *Client) Live(ctx context.Context) error {
	var h Health
	return c.getJSON(ctx, PathLive, &h)
}

// Ready is nil when the node serves and has bootstrapped, and its disk is
// not full (GET /v1/health/ready); else an *Error matching ErrSyncing,
// ErrShuttingDown or ErrDiskFull.
func (c *Client) Ready(ctx context.Context) error {
	var h Health
	return c.getJSON(ctx, PathReady, &h)
}
