package rpc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/internal/limits"
)

// DefaultMaxValueSize is the largest value a PUT accepts when
// ServerOptions.MaxValueSize is 0 (max_value_size's default).
const DefaultMaxValueSize = limits.DefaultMaxValueSize

// ServerOptions configure NewServer.
type ServerOptions struct {
	// MaxValueSize bounds a PUT body, and (doubled) an import line.
	// 0 means DefaultMaxValueSize.
	MaxValueSize int
	// MaxRequestBytes is the budget for request bodies held in memory at
	// once, across all connections (values being read, import lines);
	// beyond it a request is answered 503 busy. 0 means
	// DefaultMaxRequestBytes; it is raised to MaxValueSize if below.
	MaxRequestBytes int64
	// MaxConnections caps the connections served at once; a few more are
	// accepted for health and status only (see Serve). 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// BodyTimeout bounds a request body that sends nothing, and a PUT's
	// whole value. 0 means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// StreamWriteTimeout bounds each write of a watch or export stream: a
	// client that reads nothing for this long is dropped. 0 means
	// DefaultStreamWriteTimeout.
	StreamWriteTimeout time.Duration
	// ErrorLog receives the HTTP server's own errors (bad connections);
	// nil: the standard logger.
	ErrorLog *log.Logger
	// Observe, when set, is told of every request (observe.go): the
	// daemon's latency histograms.
	Observe Observer
}

// withDefaults fills the zero fields of o.
func (o ServerOptions) withDefaults() ServerOptions {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	o.MaxRequestBytes = max(o.MaxRequestBytes, int64(o.MaxValueSize))
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.StreamWriteTimeout <= 0 {
		o.StreamWriteTimeout = DefaultStreamWriteTimeout
	}
	return o
}

// Server answers the local API (README.md, The HTTP API) by calling a Backend.
//
// Create it with NewServer, start it with Serve, stop it with Shutdown.
type Server struct {
	b        Backend
	log      Logger
	opts     ServerOptions
	maxValue int
	budget   *budget
	routes   map[string]route
	srv      *http.Server
	fast     fastConns // connections on the fast path (fastpath.go)

	// streams ends the watch, export and import streams: Shutdown ends it
	// for good (they never go idle by themselves, so http.Server.Shutdown
	// would wait for them), EndStreams ends the streams of the moment.
	streamsMu   sync.Mutex
	streams     context.Context
	stopStreams context.CancelCauseFunc
	closed      bool
}

// route is one fixed path: the methods it takes and its handler.
type route struct {
	methods []string
	h       http.HandlerFunc
}

// Logger is what the server logs through: the two levels it uses of an
// hclog.Logger. It is an interface so that ckctl, which links this package,
// does not link a logging library.
type Logger interface {
	Debug(msg string, args ...any)
	Warn(msg string, args ...any)
}

type nullLogger struct{}

func (nullLogger) Debug(string, ...any) {}
func (nullLogger) Warn(string, ...any)  {}

// NewServer returns a server that answers with b. A nil log discards.
func NewServer(b Backend, log Logger, opts ServerOptions) *Server {
	if log == nil {
		log = nullLogger{}
	}
	opts = opts.withDefaults()
	s := &Server{b: b, log: log, opts: opts, maxValue: opts.MaxValueSize, budget: newBudget(opts.MaxRequestBytes)}
	s.streams, s.stopStreams = context.WithCancelCause(context.Background())
	get, post := []string{http.MethodGet}, []string{http.MethodPost}
	s.routes = map[string]route{
		"/v1/kv":      {get, s.handleList},
		"/v1/watch":   {get, s.handleWatch},
		"/v1/export":  {get, s.handleExport},
		"/v1/import":  {post, s.handleImport},
		"/v1/members": {get, s.handleMembers},
		"/v1/status":  {get, s.handleStatus},
		PathHealth:    {get, s.handleHealth},
		PathReady:     {get, s.handleHealth},
		PathLive:      {get, s.handleLive},
		"/v1/metrics": {get, s.handleMetrics},
		"/v1/reload":  {post, s.handleReload},
		"/v1/rejoin":  {post, s.handleRejoin},
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          opts.ErrorLog,
		ConnContext:       connContext,
	}
	s.srv.RegisterOnShutdown(s.closeStreams)
	return s
}

// Serve answers requests on ln until Shutdown; it then returns nil. Any
// other error ends it too and is returned. It serves at most
// MaxConnections connections at once, and a few more for health and
// status only (limitListener).
func (s *Server) Serve(ln net.Listener) error {
	// Connections are read first by the fast path (fastpath.go), which
	// hands to net/http every one whose request is not a plain key GET or
	// PUT.
	hl := newHandoffListener(newLimitListener(ln, s.opts.MaxConnections, s.log))
	go s.acceptFast(hl)
	err := s.srv.Serve(hl)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// EndStreams ends the watch, export and import streams running now; each
// ends with cause as its last word (for a rejoin: the node is
// syncing). A stream blocked writing to a client that does not read is
// cut off at once. Streams started afterwards run as usual.
func (s *Server) EndStreams(cause error) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.closed {
		return
	}
	s.stopStreams(cause)
	s.streams, s.stopStreams = context.WithCancelCause(context.Background())
}

// closeStreams ends the streams for good: the server is shutting down.
func (s *Server) closeStreams() {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	s.closed = true
	s.stopStreams(ErrShuttingDown)
}

// currentStreams is the context that ends the streams starting now.
func (s *Server) currentStreams() context.Context {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return s.streams
}

// Shutdown stops accepting connections, ends watch and export streams,
// and waits for the requests in flight until ctx ends; then it closes
// the connections that remain and returns ctx's error. It closes the
// listeners Serve was given. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeStreams()
	fast := make(chan error, 1)
	go func() { fast <- s.fast.shutdown(ctx) }()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return cmp.Or(err, <-fast)
}

// Handler returns the API as an http.Handler, for tests and for mounting
// elsewhere. Streams started through it end at Shutdown too.
func (s *Server) Handler() http.Handler { return s }

// debugLogger is a Logger that says whether it logs at debug level (an
// hclog.Logger does). The request log costs a few allocations a request;
// with such a logger they are spent only when it would show.
type debugLogger interface{ IsDebug() bool }

// ServeHTTP routes a request and logs it at debug level.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	liftDeadlines(w, r)
	if s.opts.Observe != nil {
		defer s.observe(r, time.Now())
	}
	if d, ok := s.log.(debugLogger); ok && !d.IsDebug() {
		s.route(w, r)
		return
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	s.route(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	s.log.Debug("request", "method", r.Method, "path", r.URL.EscapedPath(),
		"query", r.URL.RawQuery, "status", rec.status, "bytes", rec.bytes,
		"duration", time.Since(start))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if restricted(r.Context()) && !s.restrictedAllows(w, r) {
		return
	}
	// The key is taken from the escaped path, not r.URL.Path, so that an
	// escaped "/" in the key cannot be mistaken for a path separator
	// before the /v1/kv/ prefix; and no ServeMux, which would clean the
	// path and redirect.
	path := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(path, "/v1/kv/"); ok {
		if !allow(w, r, http.MethodGet, http.MethodPut, http.MethodDelete) {
			return
		}
		key, err := url.PathUnescape(rest)
		if err != nil {
			s.writeError(w, Errorf(ErrBadRequest, "bad key escaping: %v", err))
			return
		}
		s.handleKey(w, r, key)
		return
	}
	if rest, ok := strings.CutPrefix(path, "/v1/members/"); ok {
		s.handleMember(w, r, rest)
		return
	}
	rt, ok := s.routes[path]
	if !ok {
		s.writeError(w, Errorf(ErrUnknownPath, "unknown path %s", path))
		return
	}
	if allow(w, r, rt.methods...) {
		rt.h(w, r)
	}
}

// allow answers 405 with an Allow header unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	list := strings.Join(methods, ", ")
	w.Header().Set("Allow", list)
	writeError(w, Errorf(ErrMethodNotAllowed, "method %s not allowed on %s (allowed: %s)",
		r.Method, r.URL.EscapedPath(), list))
	return false
}

func (s *Server) handleKey(w http.ResponseWriter, r *http.Request, key string) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.handleGet(r.Context(), w, key, q)
	case http.MethodPut:
		s.handlePut(w, r, key, q)
	case http.MethodDelete:
		opts, err := writeOptions(q)
		if err != nil {
			s.writeError(w, err)
			return
		}
		rec, err := s.b.Delete(r.Context(), key, opts)
		s.answer(w, rec, err)
	}
}

func (s *Server) handleGet(ctx context.Context, w http.ResponseWriter, key string, q url.Values) {
	opts := GetOptions{Fresh: has(q, "fresh")}
	rec, info, err := s.b.Get(ctx, key, opts)
	h := w.Header()
	if err != nil {
		if info.Syncing { // a not-found from a joining node says so too
			h.Set("Ck-Syncing", "true")
		}
		s.writeError(w, err)
		return
	}
	h.Set("Ck-Version", strconv.FormatUint(rec.Version, 10))
	if info.Fresh || opts.Fresh {
		h.Set("Ck-Answered", strconv.Itoa(info.Answered))
		h.Set("Ck-Alive", strconv.Itoa(info.Alive))
		if info.Asked > 0 {
			h.Set("Ck-Asked", strconv.Itoa(info.Asked))
		}
	}
	if info.Syncing {
		h.Set("Ck-Syncing", "true")
	}
	if has(q, "raw") {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
		w.WriteHeader(http.StatusOK)
		w.Write(rec.Value)
		return
	}
	if info.Answered == 0 && info.Alive == 0 {
		s.answer(w, rec, nil) // the same JSON as GetResponse's, built directly
		return
	}
	s.writeJSON(w, http.StatusOK, GetResponse{Record: rec, Answered: info.Answered, Alive: info.Alive, Asked: info.Asked})
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, key string, q url.Values) {
	opts, err := writeOptions(q)
	if err != nil {
		s.writeError(w, err)
		return
	}
	body := newBodyReader(http.NewResponseController(w), r.Body, s.opts.BodyTimeout, time.Now().Add(s.opts.BodyTimeout))
	s.put(r.Context(), w, key, opts, r.ContentLength, expectsContinue(r), body)
}

// put reads a PUT's value of length n (-1: unknown) from body and stores
// it: the net/http path and the fast path (fastpath.go) share it, and so
// the budget, the limits and the answers.
func (s *Server) put(ctx context.Context, w http.ResponseWriter, key string, opts WriteOptions, n int64, expect bool, body *bodyReader) {
	if n > int64(s.maxValue) {
		s.writeError(w, Errorf(ErrTooLarge, "value too large: %d bytes, over the limit of %d", n, s.maxValue))
		return
	}
	value, held, err := s.readValue(n, expect, body)
	body.done()
	defer s.budget.release(held)
	if err != nil {
		s.writeError(w, err)
		return
	}
	rec, err := s.b.Put(ctx, key, value, opts)
	s.answer(w, rec, err)
}

// expectsContinue reports a request whose client waits to be told to send
// its body (Expect: 100-continue).
func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// errBusyBodies answers a request whose body finds no room in the budget.
func (s *Server) errBusyBodies() *Error {
	return Errorf(ErrBusy, "the daemon is busy: request bodies in flight are at max_request_bytes (%d bytes); try again shortly",
		s.opts.MaxRequestBytes)
}

// readValue reads a PUT's body, at most maxValue bytes, into room taken
// from the budget first: with a Content-Length into one buffer of that
// size, else growing, each growth reserved before it is made. It returns
// the bytes held in the budget, which the caller releases when done with
// the value, even on error.
func (s *Server) readValue(n int64, expect bool, body io.Reader) (value []byte, held int64, err error) {
	if n >= 0 && n <= int64(s.maxValue) {
		if !s.budget.tryTake(n) {
			s.discard(expect, body, n)
			return nil, 0, s.errBusyBodies()
		}
		value := make([]byte, n)
		if _, err := io.ReadFull(body, value); err != nil {
			return nil, n, Errorf(ErrBadRequest, "reading the value: %v", err)
		}
		return value, n, nil // the server reads no further than Content-Length
	}
	return s.readChunked(body)
}

// readChunked reads a body of unknown length, one byte past maxValue at
// most (to tell "at the limit" from "over it"), growing its buffer only
// into room reserved in the budget.
func (s *Server) readChunked(body io.Reader) (value []byte, held int64, err error) {
	limit := s.maxValue + 1
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grow := int64(min(max(2*cap(buf), 64<<10), limit))
			if !s.budget.tryTake(grow) {
				return nil, held, s.errBusyBodies()
			}
			nb := make([]byte, len(buf), grow)
			copy(nb, buf)
			s.budget.release(held)
			buf, held = nb, grow
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > s.maxValue {
			return nil, held, Errorf(ErrTooLarge, "value too large: over the limit of %d bytes", s.maxValue)
		}
		if err == io.EOF {
			return buf, held, nil
		}
		if err != nil {
			return nil, held, Errorf(ErrBadRequest, "reading the value: %v", err)
		}
	}
}

// discard reads and drops the n bytes of a body the server will not take,
// so that the client, still sending it, reads the answer instead of a
// broken connection. It holds no memory of its own; a client that asked
// to be told first (Expect: 100-continue) has sent nothing and is spared.
func (s *Server) discard(expect bool, body io.Reader, n int64) {
	if expect {
		return
	}
	io.Copy(io.Discard, io.LimitReader(body, n))
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	opts := ListOptions{Prefix: q.Get("prefix"), After: q.Get("after"), Values: has(q, "values")}
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			s.writeError(w, Errorf(ErrBadRequest, "bad limit %q: want a count", v[0]))
			return
		}
		opts.Limit = n
	}
	syncing := s.bootstrapping()
	resp, err := s.b.List(r.Context(), opts)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if syncing {
		w.Header().Set("Ck-Syncing", "true")
	}
	if resp.Items == nil {
		resp.Items = []Record{}
	}
	s.writeJSON(w, http.StatusOK, resp)
}

// bootstrapping reports whether the backend's node is still pulling what
// it lacks from its peers, so that a listing may be incomplete.
func (s *Server) bootstrapping() bool {
	b, ok := s.b.(Bootstrapper)
	return ok && b.Bootstrapping()
}

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	m, err := s.b.Members(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	if m == nil {
		m = []Member{}
	}
	s.writeJSON(w, http.StatusOK, m)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Health(r.Context()); err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	h := s.b.Metrics()
	if h == nil {
		s.writeError(w, Errorf(ErrInternal, "metrics are not available"))
		return
	}
	h.ServeHTTP(w, r)
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Reload(r.Context()); err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// answer writes a write's record, or its error.
func (s *Server) answer(w http.ResponseWriter, rec Record, err error) {
	if err != nil {
		s.writeError(w, err)
		return
	}
	b := recordBufs.Get().(*[]byte)
	*b = append(appendRecordJSON((*b)[:0], &rec), '\n')
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(*b)
	if cap(*b) <= 64<<10 {
		recordBufs.Put(b)
	}
}

// jsonContentType is the Content-Type of a record's answer, shared by all
// of them (Header.Set makes a slice per answer): neither the fast path nor
// net/http changes a header's values, and with no room behind its one
// element an Add would copy it.
var jsonContentType = []string{"application/json"}

// recordBufs holds buffers for answers that are one record.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers with err's status and {"error","code"} body. Errors
// that are not *Error are internal and logged.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	e := AsError(err)
	if e.Code == ErrInternal.Code {
		s.log.Warn("internal error", "error", err)
	}
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e *Error) {
	status := e.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	// A failed read must not carry the headers of a success.
	h.Del("Ck-Version")
	if e.Code == ErrBusy.Code {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(errorLine(e), '\n'))
}

// retryAfterSeconds is the Retry-After of a busy answer: room in the
// budget or a connection is freed as requests finish, within a second
// under any load the budget admits.
const retryAfterSeconds = 1

// errorBody is the JSON of an error, in the field order README.md shows.
type errorBody struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Acked  *int   `json:"acked,omitempty"` // wait_timeout only, 0 included
	Wanted int    `json:"wanted,omitempty"`
	// Import is a failed import's count of what it imported first.
	Import *ImportResult `json:"import,omitempty"`
}

// errorLine is e's JSON, as every answer and the NATS bridge's replies
// carry it (Error.MarshalJSON).
func errorLine(e *Error) []byte {
	body := errorBody{Error: e.Message, Code: e.Code, Wanted: e.Wanted, Import: e.Import}
	if e.Code == ErrWaitTimeout.Code {
		acked := e.Acked
		body.Acked = &acked
	}
	b, _ := json.Marshal(body)
	return b
}

func parseQuery(r *http.Request) (url.Values, error) {
	raw := r.URL.RawQuery
	if raw == "" {
		return nil, nil
	}
	if !strings.ContainsAny(raw, "%+;") {
		// Nothing to unescape and nothing url.ParseQuery would refuse:
		// split it here, as it would, without its allocations.
		q := make(url.Values, 2)
		for raw != "" {
			var kv string
			kv, raw, _ = strings.Cut(raw, "&")
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			q[k] = append(q[k], v)
		}
		return q, nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, Errorf(ErrBadRequest, "bad query string: %v", err)
	}
	return q, nil
}

// has reports a query flag: true when present, whatever its value.
func has(q url.Values, name string) bool {
	_, ok := q[name]
	return ok
}

func writeOptions(q url.Values) (WriteOptions, error) {
	var o WriteOptions
	if v, ok := q["if_version"]; ok {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return o, Errorf(ErrBadRequest, "bad if_version %q: want a version number", v[0])
		}
		o.IfVersion = &n
	}
	if v, ok := q["wait"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return o, Errorf(ErrBadRequest, "bad wait %q: want a number of peers", v[0])
		}
		o.Wait = n
	}
	if v, ok := q["timeout"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d < 0 {
			return o, Errorf(ErrBadRequest, "bad timeout %q: want a duration such as 500ms or 5s", v[0])
		}
		o.Timeout = Duration(d)
	}
	if v, ok := q["ttl"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 {
			return o, Errorf(ErrBadRequest, "bad ttl %q: want a duration such as 30s or 5m", v[0])
		}
		o.TTL = Duration(d)
	}
	o.Ephemeral = has(q, "ephemeral")
	if o.Ephemeral && o.TTL != 0 {
		return o, Errorf(ErrBadRequest, "a key is either ephemeral or has a ttl, not both")
	}
	return o, nil
}

// recorder notes the status and size of an answer for the request log.
// Unwrap lets http.ResponseController reach the Flusher underneath.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
