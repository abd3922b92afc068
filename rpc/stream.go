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

// A stream writes JSON lines. Its 200 is sent with the first line (or by
// commit); an error before that gets its own status and body, an error
// after it is written as a last line {"error","code"} — lines that cannot
// be mistaken for events or records, which have no "code".
//
// Its methods are safe to call from a timer while the handler writes.
type stream struct {
	mu        sync.Mutex
	w         http.ResponseWriter
	rc        *http.ResponseController
	flush     bool // flush after every line (watch), or let the buffer fill (export)
	committed bool
	done      bool
}

func newStream(w http.ResponseWriter, flush bool) *stream {
	return &stream{w: w, rc: http.NewResponseController(w), flush: flush}
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
	st.rc.Flush()
}

// line writes v as one JSON line. Its error (the client went away) should
// end the producer.
func (st *stream) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding a stream line: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.commitLocked()
	if _, err := st.w.Write(append(b, '\n')); err != nil {
		return err
	}
	if st.flush {
		return st.rc.Flush()
	}
	return nil
}

// finish ends the stream with err (nil: a clean end). No write happens
// after it, even from a pending commit timer.
func (st *stream) finish(s *Server, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.done = true
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

// streamContext is r's context, also cancelled when the server shuts down.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.streams, cancel)
	return ctx, func() { stop(); cancel() }
}

// streamEnd turns how a producer ended into the stream's last word: a
// client that went away needs none, a shutdown says so.
func (s *Server) streamEnd(r *http.Request, err error) error {
	switch {
	case r.Context().Err() != nil:
		return nil // the client left; nobody to tell
	case s.streams.Err() != nil:
		return ErrShuttingDown
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
	ctx, cancel := s.streamContext(r)
	defer cancel()
	st := newStream(w, true)
	timer := time.AfterFunc(watchCommitDelay, st.commit)
	defer timer.Stop()
	err = s.b.Watch(ctx, q.Get("prefix"), since, fromNow, func(ev Event) error {
		return st.line(ev)
	})
	st.finish(s, s.streamEnd(r, err))
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	ctx, cancel := s.streamContext(r)
	defer cancel()
	if s.bootstrapping() {
		w.Header().Set("Ck-Syncing", "true") // sent with the 200
	}
	st := newStream(w, false)
	err = s.b.Export(ctx, q.Get("prefix"), func(rec Record) error {
		return st.line(rec)
	})
	st.finish(s, s.streamEnd(r, err))
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	lr := &lineReader{br: bufio.NewReaderSize(r.Body, 64<<10), limit: 2*s.maxValue + 64<<10}
	res, err := s.b.Import(r.Context(), has(q, "as_new"), lr.next)
	if err == nil {
		// A backend that swallowed our error must not turn a bad file
		// into a success.
		err = lr.err
	}
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, res)
}

// lineReader yields the records of an import body, one JSON line each,
// reading the body as it goes. Blank lines are skipped.
type lineReader struct {
	br    *bufio.Reader
	limit int
	line  int   // lines read so far
	err   error // the error that ended reading, other than io.EOF
}

func (lr *lineReader) next() (Record, error) {
	if lr.err != nil {
		return Record{}, lr.err
	}
	for {
		b, err := lr.readLine()
		if err != nil {
			if err != io.EOF {
				lr.err = err
			}
			return Record{}, err
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			lr.err = Errorf(ErrBadRequest, "line %d: %v", lr.line, err)
			return Record{}, lr.err
		}
		return rec, nil
	}
}

// readLine returns the next line without its newline, io.EOF at the end.
func (lr *lineReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if len(line)+len(chunk) > lr.limit {
			return nil, Errorf(ErrTooLarge, "line %d: longer than %d bytes", lr.line+1, lr.limit)
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
