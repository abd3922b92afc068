package rpc

import (
	"net/http"
	"strings"
	"time"
)

// Route labels for paths outside the fixed route table: a key or a member
// id never becomes a label, so the labels are a small fixed set (the
// table's paths, these, "unknown").
const (
	RouteKey     = "/v1/kv/{key}"
	RouteMember  = "/v1/members/{id}"
	RouteUnknown = "unknown"
)

// Observer is told of every request the server answered: its route label
// (a path of the route table, RouteKey, RouteMember or RouteUnknown), its
// method (GET, PUT, DELETE, POST, HEAD, or "other") and how long it took.
// For the streams (watch, export, import) the duration is the stream's
// life. It is called on the request's goroutine and must not block.
type Observer func(route, method string, took time.Duration)

// routeLabel is r's route label for an Observer.
func (s *Server) routeLabel(r *http.Request) string {
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, "/v1/kv/"):
		return RouteKey
	case strings.HasPrefix(path, "/v1/members/"):
		return RouteMember
	}
	if _, ok := s.routes[path]; ok {
		return path
	}
	return RouteUnknown
}

// methodLabel bounds the method label to the methods the API knows.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodHead:
		return m
	}
	return "other"
}

// observe reports a request that started at start to the Observer.
func (s *Server) observe(r *http.Request, start time.Time) {
	s.opts.Observe(s.routeLabel(r), methodLabel(r.Method), time.Since(start))
}
