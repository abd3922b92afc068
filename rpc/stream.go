package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// watchCommitDelay is how long a watch may go without an event before its
// 200 is sent anyway. Backend.Watch reports a compacted index before its
// first event, but it does not say when it has passed that check; waiting
// this long lets such errors still get their own status (410) while a quiet
// watch shows the client promptly that it is established.
const watchCommitDelay = 200 * time.Millisecond

// ndjson is the content type of watch and export streams.
const ndjson = "application/x-ndjson"

// DefaultStreamWriteTimeout bounds each write of a watch or export stream
// when ServerOptions.StreamWriteTimeout is 0: a client that reads nothing
// for this long (ckctl watch | less, left on a page) is dropped, and can
// resume with --since from the last index it printed.
const DefaultStreamWriteTimeout = 10 * time.Second

// streamEndGrace is how long the last line of a stream may take to write:
// the error that ends it, or the server's word that it shuts down.
const streamEndGrace = time.Second

// A stream writes JSON lines. Its 200 is sent with the first line (or by
// commit); an error before that gets its own status and body, an error
// after it is written as a last line {"error","code"} — lines that cannot
// be mistaken for events or records, which have no "code".
//
// Every write has a deadline (docs/ARCHITECTURE.md, Bounded resources): a
// client that does not read cannot hold the handler, and what it holds
// in the daemon, for longer than the write timeout. When the stream's
// context ends (the client left, a rejoin, a shutdown) a write in
// progress is cut off at once.
//
// Its methods are safe to call from a timer while the handler writes.
type stream struct {
	mu        sync.Mutex
	w         http.ResponseWriter
	rc        *http.ResponseController
	ctx       context.Context
	timeout   time.Duration
	flush     bool // flush after every line (watch), or let the buffer fill (export)
	committed bool
	done      bool
	dropped   bool // a write timed out: the client reads nothing

	stopCut func() bool   // stops the cut-off at the end of ctx
	cutDone chan struct{} // closed when a cut-off has run
}

// newStream starts a stream that ends with ctx. The caller calls finish.
func (s *Server) newStream(ctx context.Context, w http.ResponseWriter, r *http.Request, flush bool) *stream {
	st := &stream{w: w, rc: http.NewResponseController(w), ctx: ctx, timeout: s.opts.StreamWriteTimeout, flush: flush}
	// The deadlines outlive the handler (the server writes the end of
	// the answer after it); the connection's next request lifts them.
	markDeadlines(r.Context())
	st.cutDone = make(chan struct{})
	st.stopCut = context.AfterFunc(ctx, func() {
		defer close(st.cutDone)
		st.rc.SetWriteDeadline(time.Now())
	})
	return st
}

func (st *stream) commitLocked() {
	if st.committed {
		return
	}
	st.committed = true
	h := st.w.Header()
	h.Set("Content-Type", ndjson)
	h.Set("X-Content-Type-Options", "nosniff")
	st.w.WriteHeader(http.StatusOK)
}

// commit sends the 200 now if nothing has been sent.
func (st *stream) commit() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done || st.committed {
		return
	}
	st.commitLocked()
	if st.armLocked() == nil {
		st.rc.Flush()
	}
}

// armLocked gives the next write its deadline, unless the stream has
// ended. The end is checked after the deadline is set: an end between
// set its own (now) first, which ours has just replaced.
func (st *stream) armLocked() error {
	if err := st.ctx.Err(); err != nil {
		return err
	}
	st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
	if err := st.ctx.Err(); err != nil {
		st.rc.SetWriteDeadline(time.Now())
		return err
	}
	return nil
}

// line writes v as one JSON line. Its error (the client went away or
// reads nothing, the stream was ended) should end the producer.
func (st *stream) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding a stream line: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.armLocked(); err != nil {
		return err
	}
	st.commitLocked()
	_, err = st.w.Write(append(b, '\n'))
	if err == nil && st.flush {
		err = st.rc.Flush()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && st.ctx.Err() == nil {
		st.dropped = true
		return fmt.Errorf("%w: the client read nothing for %s", errStreamDropped, st.timeout)
	}
	return err
}

// errStreamDropped ends a stream whose client stopped reading.
var errStreamDropped = errors.New("stream dropped")

// finish ends the stream with err (nil: a clean end). No write happens
// after it, even from a pending commit timer.
func (st *stream) finish(s *Server, err error) {
	if !st.stopCut() {
		<-st.cutDone // its deadline is set before finish sets its own
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.done = true
	if st.dropped {
		s.log.Warn("dropped a stream client that read nothing", "timeout", st.timeout)
		return
	}
	st.rc.SetWriteDeadline(time.Now().Add(streamEndGrace))
	if err == nil {
		st.commitLocked()
		return
	}
	if !st.committed {
		s.writeError(st.w, err)
		return
	}
	e := AsError(err)
	if e.Code == ErrInternal.Code {
		s.log.Warn("stream ended by an error", "error", err)
	}
	st.w.Write(append(errorLine(e), '\n'))
}

// streamContext is r's context, also cancelled when the server shuts down
// or ends the streams of the moment (EndStreams). The second context is
// the latter alone: its cause says why the server ended the stream.
func (s *Server) streamContext(r *http.Request) (ctx, server context.Context, cancel context.CancelFunc) {
	server = s.currentStreams()
	ctx, cancelCtx := context.WithCancel(r.Context())
	stop := context.AfterFunc(server, cancelCtx)
	return ctx, server, func() { stop(); cancelCtx() }
}

// streamEnd turns how a producer ended into the stream's last word: a
// client that went away needs none, a shutdown or rejoin says so.
func (s *Server) streamEnd(r *http.Request, server context.Context, err error) error {
	switch {
	case r.Context().Err() != nil:
		return nil // the client left; nobody to tell
	case server.Err() != nil:
		return context.Cause(server)
	case errors.Is(err, context.Canceled):
		return nil
	}
	return err
}

func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	since, fromNow := uint64(0), true
	if v, ok := q["since"]; ok {
		if since, err = strconv.ParseUint(v[0], 10, 64); err != nil {
			s.writeError(w, Errorf(ErrBadRequest, "bad since %q: want a change index", v[0]))
			return
		}
		fromNow = false
	}
	nowAt := false
	if ix, ok := s.b.(ChangeIndexer); ok {
		// Say where the watch starts, so that a client that loses the
		// stream (a daemon restart) resumes with since=that index: a watch
		// "from now" becomes one from this index.
		last, err := ix.ChangeIndex(r.Context())
		if err != nil {
			s.writeError(w, err)
			return
		}
		if fromNow {
			since, fromNow, nowAt = last, false, true
		}
		w.Header().Set("Ck-Index", strconv.FormatUint(last, 10))
	}
	ctx, server, cancel := s.streamContext(r)
	defer cancel()
	st := s.newStream(ctx, w, r, true)
	if nowAt {
		// No compacted error can come from the last index: send the 200
		// and Ck-Index now, so that the client knows them even if the
		// stream ends at once (a shutdown).
		st.commit()
	}
	timer := time.AfterFunc(watchCommitDelay, st.commit)
	defer timer.Stop()
	err = s.b.Watch(ctx, q.Get("prefix"), since, fromNow, func(ev Event) error {
		return st.line(ev)
	})
	st.finish(s, s.streamEnd(r, server, err))
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	ctx, server, cancel := s.streamContext(r)
	defer cancel()
	if s.bootstrapping() {
		w.Header().Set("Ck-Syncing", "true") // sent with the 200
	}
	st := s.newStream(ctx, w, r, false)
	err = s.b.Export(ctx, q.Get("prefix"), func(rec Record) error {
		return st.line(rec)
	})
	st.finish(s, s.streamEnd(r, server, err))
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	ctx, server, cancel := s.streamContext(r)
	defer cancel()
	body := newBodyReader(http.NewResponseController(w), r.Body, s.opts.BodyTimeout, time.Time{})
	defer context.AfterFunc(ctx, body.stop)()
	defer body.done()
	lr := &lineReader{br: bufio.NewReaderSize(body, importReadSize), limit: 2*s.maxValue + importSlack,
		ctx: ctx, budget: s.budget, busy: s.errBusyBodies}
	defer lr.close()
	if !s.budget.take(ctx, 2*importReadSize, importBudgetWait) {
		s.writeError(w, s.errBusyBodies())
		return
	}
	lr.held = 2 * importReadSize
	res, err := s.b.Import(ctx, has(q, "as_new"), lr.next)
	if server.Err() != nil {
		err = context.Cause(server) // why the server ended it, not the read error it caused
	}
	if err == nil {
		// A backend that swallowed our error must not turn a bad file
		// into a success.
		err = lr.err
		res.Line = lr.errLine
	}
	if err != nil {
		s.writeError(w, importError(err, res))
		return
	}
	s.writeJSON(w, http.StatusOK, res)
}

// importError is a failed import's answer: the error, saying what was
// imported before it, with the counts in Import.
func importError(err error, res ImportResult) *Error {
	c := *AsError(err)
	c.Import = &res
	if res.Line > 0 {
		c.Message = fmt.Sprintf("%s: imported %d records (%d applied) from the lines before line %d; nothing from line %d on",
			c.Message, res.Records, res.Applied, res.Line, res.Line)
	} else {
		c.Message = fmt.Sprintf("%s: imported %d records (%d applied) before the failure", c.Message, res.Records, res.Applied)
	}
	return &c
}

const (
	// importReadSize is the read buffer of an import body; twice it is
	// taken from the budget for the import's life (the buffer, and a line
	// that fits it).
	importReadSize = 64 << 10
	// importSlack is what an import line may hold besides its value, in
	// base64 (up to twice max_value_size): key, version vector and such.
	importSlack = 64 << 10
	// importBudgetWait is how long an import waits for room in the budget
	// before it gives up busy: unlike a PUT, it cannot be resent whole
	// by the client, and room comes back as requests finish.
	importBudgetWait = 5 * time.Second
)

// lineReader yields the records of an import body, one JSON line each,
// reading the body as it goes. Blank lines are skipped. A line longer
// than importReadSize grows its buffer only into room taken from the
// budget; the room is given back when the next line is read.
type lineReader struct {
	br      *bufio.Reader
	limit   int
	line    int   // lines read so far
	err     error // the error that ended reading, other than io.EOF
	errLine int   // the line err is about
	ctx     context.Context
	budget  *budget
	busy    func() *Error
	held    int64  // taken from the budget
	long    []byte // the buffer of a long line, reserved beyond the first held
}

// close gives back what the reader holds in the budget.
func (lr *lineReader) close() {
	lr.budget.release(lr.held)
	lr.held, lr.long = 0, nil
}

// grow returns buf with room for n bytes, reserving the growth first.
func (lr *lineReader) grow(buf []byte, n int) ([]byte, error) {
	if n <= cap(buf) {
		return buf, nil
	}
	newCap := max(2*cap(buf), n, importReadSize)
	newCap = min(newCap, lr.limit)
	add := int64(newCap - cap(lr.long))
	if !lr.budget.take(lr.ctx, add, importBudgetWait) {
		e := lr.busy()
		return nil, Errorf(ErrBusy, "line %d: %s", lr.line+1, e.Message)
	}
	lr.held += add
	nb := make([]byte, len(buf), newCap)
	copy(nb, buf)
	lr.long = nb
	return nb, nil
}

// shrink gives back the room of a long line once it has been used.
func (lr *lineReader) shrink() {
	if lr.long == nil {
		return
	}
	lr.budget.release(int64(cap(lr.long)))
	lr.held -= int64(cap(lr.long))
	lr.long = nil
}

// next returns the next record and its line (Backend.Import's next).
func (lr *lineReader) next() (Record, int, error) {
	if lr.err != nil {
		return Record{}, lr.errLine, lr.err
	}
	for {
		b, err := lr.readLine()
		if err != nil {
			if err == io.EOF {
				return Record{}, lr.line, err
			}
			lr.err, lr.errLine = err, lr.line+1 // the line it could not read
			return Record{}, lr.errLine, err
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			lr.err, lr.errLine = Errorf(ErrBadRequest, "line %d: %v", lr.line, err), lr.line
			return Record{}, lr.line, lr.err
		}
		return rec, lr.line, nil
	}
}

// readLine returns the next line without its newline, io.EOF at the end.
func (lr *lineReader) readLine() ([]byte, error) {
	lr.shrink() // the record of the last line has been applied
	var line []byte
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if len(line)+len(chunk) > lr.limit {
			return nil, Errorf(ErrTooLarge, "line %d: longer than %d bytes (twice max_value_size, plus %d): refused",
				lr.line+1, lr.limit, importSlack)
		}
		if len(line) > 0 || errors.Is(err, bufio.ErrBufferFull) {
			var gerr error
			if line, gerr = lr.grow(line, len(line)+len(chunk)); gerr != nil {
				return nil, gerr
			}
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			lr.line++
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			lr.line++
			return line, nil
		default:
			return nil, Errorf(ErrBadRequest, "reading line %d: %v", lr.line+1, err)
		}
	}
}
