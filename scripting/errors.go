package scripting

import (
	"errors"
	"fmt"
)

// Errors returned by the engine. Callers test them with errors.Is.
var (
	// ErrRejected: an on_set hook refused the write, by error("why") or
	// `return nil, "why"`. The error's message is the script's reason
	// (a *RejectError). The API maps it to 422 hook_rejected.
	ErrRejected = errors.New("rejected by hook")

	// ErrHook: a hook failed — a runtime error, a timeout, the heap limit, a
	// result of the wrong type, or no free Lua state ("hook pool
	// exhausted"). The API maps it to 500 hook_error; for on_conflict the
	// caller falls back to last-writer-wins.
	ErrHook = errors.New("hook error")

	// ErrCompile: a script failed to load — a syntax error, or an error
	// raised by its top-level code. New returns it wrapped in a
	// *CompileError that names the file and line.
	ErrCompile = errors.New("hook script failed to load")
)

// Causes wrapped together with ErrHook, for callers and tests that want
// to tell them apart.
var (
	// ErrTimeout: the call overran its hook's timeout and was abandoned.
	ErrTimeout = errors.New("timeout")
	// ErrHeapLimit: the heap watchdog cancelled the call.
	ErrHeapLimit = errors.New("heap limit reached")
	// ErrPoolExhausted: every Lua state stayed busy (or abandoned and still
	// running) for the call's whole wait — its hook's timeout — or its
	// caller gave up while it waited its turn.
	ErrPoolExhausted = errors.New("hook pool exhausted")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("hook engine closed")
)

// RejectError is the error of a rejected write. Its message is the reason
// the script gave, without the "file:line:" prefix Lua's error() adds.
type RejectError struct {
	Script string // the hook's script path
	Reason string
}

func (e *RejectError) Error() string {
	if e.Reason == "" {
		return ErrRejected.Error()
	}
	return e.Reason
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectError) Unwrap() error { return ErrRejected }

// CompileError names the script and line a load failure came from.
// Line is 0 when it is not known (for example a missing file).
type CompileError struct {
	File string
	Line int
	Msg  string
}

func (e *CompileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes errors.Is(err, ErrCompile) true.
func (e *CompileError) Unwrap() error { return ErrCompile }
