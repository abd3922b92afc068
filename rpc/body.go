package rpc

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// DefaultBodyTimeout bounds how long a request body may go without
// sending anything, and how long a PUT's whole value may take, when
// ServerOptions.BodyTimeout is 0.
const DefaultBodyTimeout = 10 * time.Second

// bodyReader reads a request body under read deadlines on its connection:
// each Read must return within idle, and none may end after until (when
// set). The deadlines are the connection's, so they cover a client that
// stops sending halfway; http.Server's own ReadTimeout cannot be used, as
// it would also end the watch streams, which read nothing for hours.
//
// stop ends a read in progress at once (a rejoin or shutdown); done
// lifts the deadline once the body has been read.
type bodyReader struct {
	r       io.Reader
	rc      readDeadliner
	idle    time.Duration
	until   time.Time
	stopped atomic.Bool
	eof     bool // the body was read to its end
}

// readDeadliner sets the read deadline of a request's connection: an
// http.ResponseController, or the connection itself on the fast path.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

func newBodyReader(rc readDeadliner, r io.Reader, idle time.Duration, until time.Time) *bodyReader {
	return &bodyReader{r: r, rc: rc, idle: idle, until: until}
}

// errBodyStopped ends a body read by stop.
var errBodyStopped = errors.New("the request was interrupted")

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.stopped.Load() {
		return 0, errBodyStopped
	}
	d := time.Now().Add(b.idle)
	if !b.until.IsZero() && b.until.Before(d) {
		d = b.until
	}
	b.rc.SetReadDeadline(d)
	// Checked again after setting the deadline: a stop between the two
	// set its own deadline first, which ours has just replaced.
	if b.stopped.Load() {
		return 0, errBodyStopped
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if time.Now().Before(d) {
			return n, errBodyStopped // cut short by stop, not our deadline
		}
		if !b.until.IsZero() && !time.Now().Before(b.until) {
			return n, Errorf(ErrBadRequest, "the request body did not arrive within %s", b.idle)
		}
		return n, Errorf(ErrBadRequest, "the request body sent nothing for %s", b.idle)
	}
	return n, err
}

// stop interrupts the body: a read in progress returns at once.
func (b *bodyReader) stop() {
	b.stopped.Store(true)
	b.rc.SetReadDeadline(time.Now())
}

// done lifts the read deadline once the body has been read to its end,
// so that the connection can wait (a --wait, the next request). Else it
// stays: the server reads what is left of the body to drop it after the
// handler, and that too must end within the deadline.
func (b *bodyReader) done() {
	if b.eof {
		b.rc.SetReadDeadline(time.Time{})
	}
}
