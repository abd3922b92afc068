package rpc

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is an API error: {"error": "...", "code": "..."} with an HTTP status.
// The sentinels below are *Error values; errors.Is matches any *Error with
// the same Code, so an error that crossed the socket compares equal to the
// sentinel the server started from.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
	// Acked is set on wait_timeout: how many peers acknowledged the write.
	Acked int `json:"acked,omitempty"`
	// Wanted is set on wait_timeout: how many acknowledgements were asked.
	Wanted int `json:"wanted,omitempty"`
	// Import is set on a failed import: what it imported before the failure.
	Import *ImportResult `json:"import,omitempty"`

	// retryAfter is the answer's Retry-After, for a client that resends.
	retryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// MarshalJSON writes the API's error body (README.md, The HTTP API):
// acked is present, 0 included, exactly on wait_timeout.
func (e *Error) MarshalJSON() ([]byte, error) { return errorLine(e), nil }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// The API's error codes (README.md, The HTTP API).
var (
	ErrBadRequest      = &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "bad request"}
	ErrNotFound        = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "key not found"}
	ErrVersionMismatch = &Error{Status: http.StatusConflict, Code: "version_mismatch", Message: "version mismatch"}
	ErrCompacted       = &Error{Status: http.StatusGone, Code: "compacted", Message: "the change log no longer holds that index"}
	ErrTooLarge        = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "value too large"}
	ErrHookRejected    = &Error{Status: http.StatusUnprocessableEntity, Code: "hook_rejected", Message: "rejected by a hook"}
	ErrHookError       = &Error{Status: http.StatusInternalServerError, Code: "hook_error", Message: "hook failed"}
	ErrInternal        = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	ErrShuttingDown    = &Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the daemon is shutting down"}
	ErrSyncing         = &Error{Status: http.StatusServiceUnavailable, Code: "syncing", Message: "the node is still bootstrapping"}
	ErrWaitTimeout     = &Error{Status: http.StatusGatewayTimeout, Code: "wait_timeout", Message: "stored, but not enough peers acknowledged"}
	ErrDiskFull        = &Error{Status: http.StatusInsufficientStorage, Code: "disk_full", Message: "disk full: writes refused"}
	// ErrBusy is a request the daemon turned away for want of room (request
	// bodies in flight, connections), not for what it asked: the answer
	// carries Retry-After and the same request may be sent again.
	ErrBusy = &Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: "the daemon is busy: try again shortly"}

	// The server's own answers to requests it cannot route.
	ErrUnknownPath      = &Error{Status: http.StatusNotFound, Code: "unknown_path", Message: "unknown path"}
	ErrMethodNotAllowed = &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed"}
)

// Errorf returns an error with the code and status of base and a message
// of its own, for example Errorf(ErrBadRequest, "key %q: empty segment", k).
func Errorf(base *Error, format string, args ...any) *Error {
	return &Error{Status: base.Status, Code: base.Code, Message: fmt.Sprintf(format, args...)}
}

// AsError turns any error into an *Error: itself if it is one (or wraps
// one, keeping the outer message), else an internal error with its text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if msg := err.Error(); msg != e.Message {
			c := *e
			c.Message = msg
			return &c
		}
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: ErrInternal.Code, Message: err.Error()}
}

// errorForCode returns the sentinel for a code received from the server,
// so that the client can rebuild an *Error with the right status.
func errorForCode(code string) *Error {
	for _, e := range []*Error{ErrBadRequest, ErrNotFound, ErrVersionMismatch, ErrCompacted,
		ErrTooLarge, ErrHookRejected, ErrHookError, ErrInternal, ErrShuttingDown, ErrSyncing,
		ErrWaitTimeout, ErrDiskFull, ErrBusy, ErrUnknownPath, ErrMethodNotAllowed} {
		if e.Code == code {
			return e
		}
	}
	return nil
}

// Errors that never cross the socket.
var (
	// ErrSocketInUse is returned by Listen when another daemon answers on
	// the socket path.
	ErrSocketInUse = errors.New("socket in use")
	// ErrUnreachable is returned by the Client when it cannot connect to
	// the daemon's socket (missing, refused); the error names the socket.
	ErrUnreachable = errors.New("cannot reach ckd")
	// ErrNoAnswer is returned by a Client with a Timeout when the daemon
	// took the call but did not answer in time (stopped or hung); the
	// error is a *NoAnswerError naming the socket and the bound.
	ErrNoAnswer = errors.New("no answer from ckd")
	// ErrUntrustedServer is returned by the Client when the process serving
	// the socket is neither root, nor the client's user, nor the owner of
	// the socket and its private directory (CheckServer); nothing was
	// sent. The error is an *UntrustedServerError naming the uid.
	ErrUntrustedServer = errors.New("untrusted server on the socket")
	// ErrSocketDir is returned by Listen for a socket directory other users
	// may write that is not sticky, or a path in a shared (sticky)
	// directory that another user's file holds.
	ErrSocketDir = errors.New("unsafe socket directory")
)
