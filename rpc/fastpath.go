package rpc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path (docs/ARCHITECTURE.md, "The request path"). net/http
// spends more CPU per request than the store does on a get: a Request,
// its URL and header map, a context, a response and its chunk writer,
// and a goroutine started per request to notice the client hanging up,
// which a deadline then wakes. The two requests that carry the load — GET
// and PUT of /v1/kv/{key}, with no query but ?raw — are read here
// instead, from the connection's own buffer, and answered by the same
// handlers (handleGet, put) through a small http.ResponseWriter. Anything
// else, or anything unusual in such a request (another method or query, a
// header this path does not take, a head that does not fit its buffer,
// HTTP/1.0), hands the connection to net/http with the bytes read so far,
// and net/http serves it from then on. So every route, header and status
// is what net/http and the handlers make of it, and the fast path only
// has to tell a plain request from the rest.
//
// The bounds hold as on net/http: a connection is admitted by the same
// limitListener (reserve connections go to net/http at once), a value is
// read into room taken from the same budget with the same body deadlines,
// the head must arrive within headerTimeout and the next request within
// idleTimeout.

const (
	headerTimeout = 10 * time.Second // http.Server.ReadHeaderTimeout
	idleTimeout   = 2 * time.Minute  // http.Server.IdleTimeout
	// fastReadSize is the connection's read buffer: a request head that
	// does not fit goes to net/http (which takes up to 64 KiB).
	fastReadSize = 4 << 10
	// fastHoldMax is how much of an answer without a Content-Length is
	// held back to give it one; past it the answer is sent chunked, as
	// net/http does past its own 2 KiB.
	fastHoldMax = 8 << 10
	// maxDrain is how much of a body the handler did not read is read
	// and dropped to keep the connection (net/http's 256 KiB).
	maxDrain = 256 << 10
)

// handoffListener is what http.Server serves: the connections the fast
// path handed over, and the reserve's connections, which go to net/http
// directly.
type handoffListener struct {
	net.Listener // the limitListener: closed by Close
	conns        chan net.Conn
	done         chan struct{}
	once         sync.Once
	err          error // why Accept fails, set before done is closed
}

func newHandoffListener(ln net.Listener) *handoffListener {
	return &handoffListener{Listener: ln, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, h.err
	}
}

// Close closes the listener underneath: the acceptor's Accept fails.
func (h *handoffListener) Close() error {
	h.end(net.ErrClosed)
	return h.Listener.Close()
}

func (h *handoffListener) end(err error) {
	h.once.Do(func() {
		h.err = err
		close(h.done)
	})
}

// handoff gives c to http.Server, or closes it if the server stopped.
func (h *handoffListener) handoff(c net.Conn) {
	select {
	case h.conns <- c:
	case <-h.done:
		c.Close()
	}
}

// acceptFast accepts the connections: reserve connections go to net/http,
// the others are read by the fast path. Accept errors for want of
// descriptors back off as http.Server does (5 ms doubling to 1 s); any
// other error ends Serve with it.
func (s *Server) acceptFast(hl *handoffListener) {
	var delay time.Duration
	for {
		c, err := hl.Listener.Accept()
		if err != nil {
			var ne net.Error
			//lint:ignore SA1019 the test http.Server makes of Accept errors
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-hl.done:
					return
				}
			}
			hl.end(err)
			return
		}
		delay = 0
		if _, reserve := c.(*restrictedConn); reserve {
			hl.handoff(c)
			continue
		}
		fc := s.fast.add(s, c, hl)
		if fc == nil { // shutting down
			c.Close()
			continue
		}
		go fc.serve()
	}
}

// fastConns tracks the fast path's connections for Shutdown.
type fastConns struct {
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing atomic.Bool // set under mu
	wg      sync.WaitGroup
}

func (f *fastConns) add(s *Server, c net.Conn, hl *handoffListener) *fastConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return nil
	}
	if f.conns == nil {
		f.conns = map[*fastConn]struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	fc := &fastConn{s: s, c: c, hl: hl, ctx: ctx, cancel: cancel}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	return fc
}

func (f *fastConns) remove(fc *fastConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.wg.Done()
}

// shutdown closes the idle connections at once and lets the busy ones
// finish their request; when ctx ends first it closes them too.
func (f *fastConns) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closing.Store(true)
	for fc := range f.conns {
		fc.closeIfIdle()
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	for fc := range f.conns {
		fc.c.Close()
		fc.cancel()
	}
	f.mu.Unlock()
	return ctx.Err()
}

// Connection states, for Shutdown.
const (
	connIdle   int32 = iota // waiting for a request
	connActive              // reading or answering one
	connClosed              // closed by Shutdown while idle
)

// fastConn is one connection on the fast path.
type fastConn struct {
	s      *Server
	c      net.Conn
	hl     *handoffListener
	ctx    context.Context // the requests' context: ends with the connection
	cancel context.CancelFunc
	state  atomic.Int32
	r      *bufio.Reader
	w      *bufio.Writer
	req    fastRequest
	resp   fastResponse
	body   bodyLimit
	bodyR  bodyReader
}

var (
	fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, fastReadSize) }}
	fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (fc *fastConn) closeIfIdle() {
	if fc.state.CompareAndSwap(connIdle, connClosed) {
		fc.c.Close()
	}
}

// serve reads and answers requests until the connection ends or is
// handed to net/http.
func (fc *fastConn) serve() {
	fc.r = fastReaders.Get().(*bufio.Reader)
	fc.r.Reset(fc.c)
	fc.w = fastWriters.Get().(*bufio.Writer)
	fc.w.Reset(fc.c)
	fc.resp.fc = fc
	fc.resp.h = make(http.Header, 4)
	handedOff := false
	defer func() {
		if v := recover(); v != nil {
			fc.s.log.Warn("panic serving a request", "panic", v)
		}
		fc.cancel()
		if !handedOff {
			fc.c.Close()
		}
		fc.r.Reset(nil)
		fastReaders.Put(fc.r)
		fc.w.Reset(nil)
		fastWriters.Put(fc.w)
		fc.s.fast.remove(fc)
	}()
	for {
		if !fc.await() {
			return
		}
		n, ok := fc.readHead()
		if ok {
			head, _ := fc.r.Peek(n)
			ok = fc.req.parse(head)
		}
		if !ok {
			if n >= 0 { // not a plain key request: net/http's
				handedOff = true
				fc.handoff()
			}
			return
		}
		fc.r.Discard(n)
		if !fc.handle() {
			if fc.resp.unread {
				fc.lingerClose()
			}
			return
		}
		fc.state.Store(connIdle)
		if fc.s.fast.closing.Load() { // Shutdown may have seen it busy
			return
		}
	}
}

// await waits for the first byte of the next request, for idleTimeout at
// most, and marks the connection busy.
func (fc *fastConn) await() bool {
	if fc.r.Buffered() == 0 {
		fc.c.SetReadDeadline(time.Now().Add(idleTimeout))
		if _, err := fc.r.Peek(1); err != nil {
			return false
		}
	}
	return fc.state.CompareAndSwap(connIdle, connActive)
}

// readHead reads until the request's head is buffered and returns its
// length with ok. ok false with n ≥ 0: the head is not for the fast path
// (too large, a line not ended by CRLF, cut short); n < 0: it did not
// arrive in time.
func (fc *fastConn) readHead() (n int, ok bool) {
	deadline := false
	for {
		b, _ := fc.r.Peek(fc.r.Buffered())
		end, bad := headEnd(b)
		switch {
		case end > 0:
			return end, true
		case bad || len(b) == fastReadSize:
			return 0, false
		}
		if !deadline {
			deadline = true
			fc.c.SetReadDeadline(time.Now().Add(headerTimeout))
		}
		if _, err := fc.r.Peek(len(b) + 1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return -1, false
			}
			// A head cut short (the client closed its side): net/http's
			// answer to what came (400, or the request if it is one).
			return 0, false
		}
	}
}

// handoff gives the connection, and the bytes read from it so far, to
// net/http.
func (fc *fastConn) handoff() {
	pre, _ := fc.r.Peek(fc.r.Buffered())
	fc.c.SetReadDeadline(time.Time{})
	fc.hl.handoff(&prefixConn{Conn: fc.c, pre: bytes.Clone(pre)})
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// fastRawQuery is the query of a GET ?raw, for handleGet (read only).
var fastRawQuery = url.Values{"raw": {""}}

// handle answers the parsed request; false: close the connection.
func (fc *fastConn) handle() bool {
	s, req, w := fc.s, &fc.req, &fc.resp
	logs := s.logsRequests()
	var start time.Time
	if s.opts.Observe != nil || logs {
		start = time.Now()
	}
	w.reset(req.close)
	switch req.method {
	case http.MethodGet:
		var q url.Values
		if req.raw {
			q = fastRawQuery
		}
		s.handleGet(fc.ctx, w, req.key, q)
	case http.MethodPut:
		fc.put()
	}
	keep := w.finish()
	if s.opts.Observe != nil {
		s.opts.Observe(RouteKey, req.method, time.Since(start))
	}
	if logs {
		query := ""
		if req.raw {
			query = "raw"
		}
		s.log.Debug("request", "method", req.method, "path", "/v1/kv/"+escapeKeyPath(req.key),
			"query", query, "status", w.status, "bytes", w.bytes, "duration", time.Since(start))
	}
	return keep
}

// put reads the value through the budget and stores it, then reads and
// drops what the handler left of the body (a refused value), or closes
// the connection if that is more than maxDrain.
func (fc *fastConn) put() {
	s, w := fc.s, &fc.resp
	n := fc.req.length
	fc.body = bodyLimit{r: fc.r, n: n}
	// A value already in the buffer needs no deadline to be read.
	var dl readDeadliner = fc.c
	if int64(fc.r.Buffered()) >= n {
		dl = noDeadline{}
	}
	fc.bodyR = bodyReader{r: &fc.body, rc: dl, idle: s.opts.BodyTimeout, until: time.Now().Add(s.opts.BodyTimeout)}
	body := &fc.bodyR
	s.put(fc.ctx, w, fc.req.key, fc.req.opts, n, false, body)
	if fc.body.n > 0 && fc.body.n <= maxDrain && !fc.body.short {
		io.Copy(io.Discard, body)
	}
	switch {
	case fc.body.n == 0:
	case fc.body.short:
		w.dead = true // the client stopped sending: nothing to tell it
	default:
		w.close, w.unread = true, true
	}
}

// rstDelay is how long a connection closed with its request body unread
// lingers after the answer (net/http's rstAvoidanceDelay): closing at once
// could reset it under a client still sending, before it read the answer.
const rstDelay = 500 * time.Millisecond

// lingerClose half-closes the connection where it can and waits rstDelay
// before serve closes it.
func (fc *fastConn) lingerClose() {
	c := fc.c
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	time.Sleep(rstDelay)
}

// bodyLimit reads a body of n bytes from the connection's buffer; a
// connection that ends before them is io.ErrUnexpectedEOF, as net/http has
// it, and marks the body short.
type bodyLimit struct {
	r     *bufio.Reader
	n     int64
	short bool
}

func (b *bodyLimit) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		b.short = true
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

type noDeadline struct{}

func (noDeadline) SetReadDeadline(time.Time) error { return nil }

// logsRequests reports whether requests are logged (at debug level).
func (s *Server) logsRequests() bool {
	switch l := s.log.(type) {
	case nullLogger:
		return false
	case debugLogger:
		return l.IsDebug()
	}
	return true
}

// escapeKeyPath is a key as the path of its request shows it (for the
// request log only).
func escapeKeyPath(key string) string {
	return (&url.URL{Path: key}).EscapedPath()
}
