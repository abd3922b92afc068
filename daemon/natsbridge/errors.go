package natsbridge

import "errors"

// Errors of the bridge.
var (
	// ErrBadSubject: a subject (or the subject key in it) is not one that
	// SubjectKey produces. Inbound writes answer it as bad_request.
	ErrBadSubject = errors.New("bad subject")
	// ErrBadConfig: the bridge's configuration is invalid; the message
	// names the field.
	ErrBadConfig = errors.New("bad nats config")
	// ErrRunning: Run was called on a bridge that is running or has run.
	ErrRunning = errors.New("the bridge runs only once")
)
