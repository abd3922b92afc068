package rpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMaxConnections is the connection cap when
// ServerOptions.MaxConnections is 0.
const DefaultMaxConnections = 512

const (
	// StatusReserve is how many connections beyond the cap are still
	// accepted, for health and status only: the checks an operator or a
	// supervisor runs must answer when clients have taken every slot.
	StatusReserve = 8
	// restrictedLife bounds a connection taken from the reserve, from
	// accept to close: one request, sent at once. Clients that hold it
	// silently give it back this fast.
	restrictedLife = time.Second
	// shedWarnEvery spaces the warnings about connections turned away.
	shedWarnEvery = 10 * time.Second
)

// limitListener caps the connections served at once (docs/ARCHITECTURE.md,
// Bounded resources). Up to max are served in full; the next
// StatusReserve are restricted (restrictedConn): they answer only
// /v1/health and /v1/status, once, within restrictedLife. Beyond those a
// connection is accepted and closed at once, so that the backlog keeps
// draining and a health check queued behind a flood still reaches the
// reserve. Nothing waits in Accept for a slot to free up.
//
// Accept errors for want of descriptors (EMFILE, ENFILE) close a spare
// descriptor held for the purpose, accept and close one pending
// connection with it, and return the error, which http.Server answers by
// backing off (5 ms doubling to 1 s): neither a spin nor a backlog that
// never drains.
type limitListener struct {
	net.Listener
	max      int64
	log      Logger
	full     atomic.Int64 // connections served in full
	reserved atomic.Int64 // restricted connections
	lastWarn atomic.Int64 // unix nanoseconds of the last shed warning

	spareMu sync.Mutex
	spare   *os.File // a descriptor to give up when there are none left
}

func newLimitListener(ln net.Listener, max int, log Logger) *limitListener {
	l := &limitListener{Listener: ln, max: int64(max), log: log}
	l.spare, _ = os.Open(os.DevNull)
	return l
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				l.shedWithSpare()
			}
			return nil, err
		}
		if l.full.Add(1) <= l.max {
			return &countedConn{Conn: c, count: &l.full}, nil
		}
		l.full.Add(-1)
		if l.reserved.Add(1) <= StatusReserve {
			return newRestrictedConn(c, &l.reserved), nil
		}
		l.reserved.Add(-1)
		c.Close()
		l.warnShed()
	}
}

// Close closes the listener and the spare descriptor.
func (l *limitListener) Close() error {
	l.spareMu.Lock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.spareMu.Unlock()
	return l.Listener.Close()
}

// shedWithSpare frees the spare descriptor, accepts one pending
// connection with it and closes that, then takes the spare back.
func (l *limitListener) shedWithSpare() {
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	if l.spare == nil {
		return
	}
	l.spare.Close()
	if ul, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		ul.SetDeadline(time.Now().Add(time.Millisecond)) // only one already pending
		if c, err := l.Listener.Accept(); err == nil {
			c.Close()
		}
		ul.SetDeadline(time.Time{})
	}
	l.spare, _ = os.Open(os.DevNull)
	l.warnShed()
}

func (l *limitListener) warnShed() {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(shedWarnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("connection limit reached: turning connections away (max_connections)",
		"max_connections", l.max, "served", l.full.Load(), "reserved_for_status", l.reserved.Load())
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	count *atomic.Int64
	once  sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.count.Add(-1) })
	return c.Conn.Close()
}

// restrictedConn is a connection taken from the status reserve: no
// deadline set on it reaches past its end of life, whatever the HTTP
// server asks.
type restrictedConn struct {
	countedConn
	until time.Time
}

func newRestrictedConn(c net.Conn, count *atomic.Int64) *restrictedConn {
	rc := &restrictedConn{countedConn: countedConn{Conn: c, count: count}, until: time.Now().Add(restrictedLife)}
	c.SetDeadline(rc.until)
	return rc
}

func (c *restrictedConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.until) {
		return c.until
	}
	return t
}

func (c *restrictedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

func (c *restrictedConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

func (c *restrictedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// connState is what the server keeps about a connection across its
// requests.
type connState struct {
	restricted bool        // taken from the status reserve
	deadlines  atomic.Bool // a stream left a write deadline on it
}

type connStateKey struct{}

// connContext is http.Server.ConnContext: it gives each connection its
// connState.
func connContext(ctx context.Context, c net.Conn) context.Context {
	_, restricted := c.(*restrictedConn)
	return context.WithValue(ctx, connStateKey{}, &connState{restricted: restricted})
}

func connStateOf(ctx context.Context) *connState {
	cs, _ := ctx.Value(connStateKey{}).(*connState)
	return cs
}

// restricted reports whether the request came on a connection of the
// status reserve.
func restricted(ctx context.Context) bool {
	cs := connStateOf(ctx)
	return cs != nil && cs.restricted
}

// markDeadlines notes that the request's connection has a write deadline
// that must be lifted before its next request (liftDeadlines).
func markDeadlines(ctx context.Context) {
	if cs := connStateOf(ctx); cs != nil {
		cs.deadlines.Store(true)
	}
}

// liftDeadlines lifts a write deadline a stream left on the connection.
func liftDeadlines(w http.ResponseWriter, r *http.Request) {
	if cs := connStateOf(r.Context()); cs != nil && cs.deadlines.Swap(false) {
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
}

// restrictedAllows answers a request on a restricted connection: health
// and status are served (and the connection closed after), anything
// else is 503 busy.
func (s *Server) restrictedAllows(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Connection", "close")
	path := r.URL.EscapedPath()
	if r.Method == http.MethodGet && (isHealthPath(path) || path == "/v1/status") {
		return true
	}
	writeError(w, Errorf(ErrBusy, "the daemon is busy: %d connections are open (max_connections); "+
		"only the health paths and /v1/status are answered until some close", s.opts.MaxConnections))
	return false
}
