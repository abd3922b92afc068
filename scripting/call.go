package scripting

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// One call of a hook function: handed from the caller to a state's
// goroutine as a request, answered with a response.

type request struct {
	ctx      context.Context
	hook     *Hook
	kind     Kind
	discover bool // run only the chunk and report the functions it defines
	conflict bool // the conflict sandbox (kind == KindConflict, or discovering it)
	key      string
	value    lua.LValue // LString or LNil; built by the caller, so an
	meta     Meta       // abandoned call never reads the caller's buffers
	winner   version
	loser    version
}

// timeout bounds the request: its hook's timeout, and for a script's top
// level when New runs it at least discoverTimeout (a hook's 50 ms is for
// calls, not for loading a script on a machine that is busy starting).
func (r *request) timeout() time.Duration {
	if r.discover {
		return max(r.hook.Timeout, discoverTimeout)
	}
	return r.hook.Timeout
}

// version is a Version with its value copied into a Lua string.
type version struct {
	value   lua.LValue // LString, or LNil when deleted
	deleted bool
	lamport uint64
	origin  string
}

func luaVersion(v Version) version {
	var value lua.LValue = lua.LNil
	if !v.Deleted {
		value = lua.LString(v.Value)
	}
	return version{value: value, deleted: v.Deleted, lamport: v.Lamport, origin: v.Origin}
}

type response struct {
	value     []byte
	isNil     bool          // the hook returned nil
	undefined bool          // this run of the chunk did not define the function
	found     map[Kind]bool // discover: the functions defined
	err       error
}

// luaError is a Lua error from a script: a runtime error, or error() in a
// hook other than on_set. msg carries Lua's "file:line:" prefix.
type luaError struct{ msg string }

func (e *luaError) Error() string { return e.msg }

// do runs req on a pooled state, waiting at most until parent ends or the
// hook's timeout passes, and counts the outcome.
func (e *Engine) do(parent context.Context, req *request) response {
	resp := e.dispatch(parent, req)
	if !req.discover {
		e.stats.count(resp.err)
	}
	return resp
}

func (e *Engine) dispatch(parent context.Context, req *request) response {
	if err := parent.Err(); err != nil { // do not spend a state on it
		return response{err: fmt.Errorf("%w: %s: %w", ErrHook, req.hook.Script, err)}
	}
	s, err := e.pool.get(parent, req.timeout())
	if err != nil {
		return response{err: fmt.Errorf("%w: %s: %w", ErrHook, req.hook.Script, err)}
	}
	ctx, cancel := context.WithCancelCause(parent)
	ctx, cancelTimer := context.WithTimeoutCause(ctx, req.timeout(), ErrTimeout)
	id := e.wd.add(cancel)
	defer func() {
		e.wd.remove(id)
		cancelTimer()
		cancel(nil)
	}()
	req.ctx = ctx

	s.status.Store(stateBusy)
	s.in <- req
	select {
	case resp := <-s.out:
		e.pool.put(s)
		return resp
	case <-ctx.Done():
		e.stats.abandonedRunning.Add(1) // before the state's goroutine can see it
		if s.status.CompareAndSwap(stateBusy, stateAbandoned) {
			e.stats.abandoned.Add(1)
			return response{err: stopped(req)}
		}
		e.stats.abandonedRunning.Add(-1)
		resp := <-s.out // it finished as the deadline passed
		e.pool.put(s)
		return resp
	}
}

// stopped is the error of a call whose context ended.
func stopped(req *request) error {
	cause := context.Cause(req.ctx)
	what := string(req.kind)
	if req.discover {
		what = "top-level code"
	}
	switch {
	case errors.Is(cause, ErrTimeout):
		return fmt.Errorf("%w: %s: %w: %s ran past %v", ErrHook, req.hook.Script, ErrTimeout, what, req.timeout())
	case errors.Is(cause, ErrHeapLimit):
		return fmt.Errorf("%w: %s: %w: %s cancelled", ErrHook, req.hook.Script, ErrHeapLimit, what)
	default:
		return fmt.Errorf("%w: %s: %w", ErrHook, req.hook.Script, cause)
	}
}

// run executes req on the sandbox's state; it runs on the state's goroutine.
func (sb *sandbox) run(req *request) (resp response) {
	L := sb.L
	L.SetContext(req.ctx)
	sb.call = callState{ctx: req.ctx, budget: sb.eng.cfg.MemoryBudget, hook: req.hook, key: req.key}
	defer func() {
		L.SetTop(0)
		L.RemoveContext()
		sb.call = callState{} // drop references to the call's values
	}()

	env, globals, freeze := sb.newEnv(req.conflict)
	chunk := L.NewFunctionFromProto(req.hook.proto)
	chunk.Env = env
	L.Push(chunk)
	if err := L.PCall(0, 0, nil); err != nil {
		return response{err: sb.failure(req, err)}
	}
	if req.discover {
		found := map[Kind]bool{}
		for _, k := range kinds {
			_, found[k] = globals.RawGetString(string(k)).(*lua.LFunction)
		}
		return response{found: found}
	}
	if freeze != nil {
		freeze()
	}
	fn, ok := globals.RawGetString(string(req.kind)).(*lua.LFunction)
	if !ok {
		return response{undefined: true}
	}
	L.Push(fn)
	nargs := sb.pushArgs(req)
	if err := L.PCall(nargs, 2, nil); err != nil {
		return response{err: sb.failure(req, err)}
	}
	return sb.result(req, L.Get(-2), L.Get(-1))
}

func (sb *sandbox) pushArgs(req *request) int {
	L := sb.L
	L.Push(lua.LString(req.key))
	if req.kind == KindConflict {
		L.Push(sb.versionTable(req.winner))
		L.Push(sb.versionTable(req.loser))
		return 3
	}
	L.Push(req.value)
	meta := L.CreateTable(0, 3)
	meta.RawSetString("node", lua.LString(req.meta.Node))
	meta.RawSetString("op", lua.LString(req.meta.Op))
	meta.RawSetString("version", lua.LNumber(req.meta.Version))
	if req.meta.TTL > 0 {
		meta.RawSetString("ttl", lua.LNumber(req.meta.TTL))
	}
	if req.meta.Ephemeral {
		meta.RawSetString("ephemeral", lua.LTrue)
	}
	L.Push(meta)
	return 3
}

func (sb *sandbox) versionTable(v version) *lua.LTable {
	t := sb.L.CreateTable(0, 4)
	t.RawSetString("value", v.value)
	t.RawSetString("deleted", lua.LBool(v.deleted))
	t.RawSetString("lamport", lua.LNumber(v.lamport))
	t.RawSetString("origin", lua.LString(v.origin))
	return t
}

// result converts what the hook function returned.
func (sb *sandbox) result(req *request, r1, r2 lua.LValue) response {
	switch v := r1.(type) {
	case lua.LString:
		return response{value: []byte(v)}
	case lua.LNumber:
		return response{value: []byte(v.String())} // tostring: 42, not 42.0
	case *lua.LNilType:
		if r2 == lua.LNil {
			return response{isNil: true}
		}
		reason := lua.LVAsString(r2)
		if reason == "" {
			reason = r2.String()
		}
		if req.kind == KindSet {
			return response{err: &RejectError{Script: req.hook.Script, Reason: reason}}
		}
		return response{err: fmt.Errorf("%w: %s: %s returned nil, %q", ErrHook, req.hook.Script, req.kind, reason)}
	default:
		return response{err: fmt.Errorf("%w: %s: %s returned a %s; want a string, a number or nil",
			ErrHook, req.hook.Script, req.kind, r1.Type())}
	}
}

// failure classifies a Lua error: the context ended, the script rejected
// the write with error(), or the script failed.
func (sb *sandbox) failure(req *request, err error) error {
	if req.ctx.Err() != nil {
		return stopped(req)
	}
	var obj lua.LValue = lua.LString(err.Error())
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		obj = ae.Object
	}
	if raised := sb.call.raised; raised != nil && sameError(obj, raised) && req.kind == KindSet && !req.discover {
		reason := lua.LVAsString(raised)
		if reason == "" {
			reason = raised.String()
		}
		return &RejectError{Script: req.hook.Script, Reason: reason}
	}
	msg := lua.LVAsString(obj)
	if msg == "" {
		msg = obj.String()
	}
	return fmt.Errorf("%w: %w", ErrHook, &luaError{msg: msg})
}

// sameError reports whether the error that ended a call is the value last
// given to error() or assert — which prefix a string with "file:line: ".
func sameError(obj, raised lua.LValue) bool {
	if rs, ok := raised.(lua.LString); ok {
		os, ok := obj.(lua.LString)
		return ok && strings.HasSuffix(string(os), string(rs))
	}
	return obj == raised
}
