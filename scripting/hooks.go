package scripting

import (
	"context"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// Meta is the `meta` argument of on_set and on_get.
type Meta struct {
	Node      string // the node the write or read entered through
	Op        string // "set" or "del"
	Version   uint64
	TTL       float64 // set: the write's TTL in seconds (meta.ttl; 0, absent: none)
	Ephemeral bool    // set: an ephemeral write (meta.ephemeral)
}

// Version is one side of a conflict, given to on_conflict as a table
// {value, deleted, lamport, origin} (value is nil when deleted).
type Version struct {
	Value   []byte
	Deleted bool
	Lamport uint64
	Origin  string
}

// OnSet runs the on_set hook for a write entering through this node
// (meta.Op "set") or a delete (meta.Op "del", value nil). It returns the
// value to store: value itself when no hook applies or the hook returns
// nil, else the hook's string (a number is converted as Lua's tostring
// does). A rejection is a *RejectError (errors.Is ErrRejected) whose
// message is the script's reason; any other failure wraps ErrHook.
func (e *Engine) OnSet(ctx context.Context, key string, value []byte, meta Meta) ([]byte, error) {
	h := e.Match(key)
	if !h.Has(KindSet) {
		return value, nil
	}
	del := meta.Op == "del"
	var v lua.LValue = lua.LString(value) // copied: the call may outlive OnSet
	if del {
		v = lua.LNil
	}
	resp := e.do(ctx, &request{hook: h, kind: KindSet, key: key, value: v, meta: meta})
	switch {
	case resp.err != nil:
		return nil, resp.err
	case resp.undefined || resp.isNil || del:
		return value, nil
	}
	if err := e.checkSize(h, KindSet, resp.value); err != nil {
		return nil, err
	}
	return resp.value, nil
}

// OnGet runs the on_get hook: the value the client sees. nil from the
// hook keeps value. Errors wrap ErrHook.
func (e *Engine) OnGet(ctx context.Context, key string, value []byte, meta Meta) ([]byte, error) {
	h := e.Match(key)
	if !h.Has(KindGet) {
		return value, nil
	}
	resp := e.do(ctx, &request{hook: h, kind: KindGet, key: key, value: lua.LString(value), meta: meta})
	switch {
	case resp.err != nil:
		return nil, resp.err
	case resp.undefined || resp.isNil:
		return value, nil
	}
	return resp.value, nil
}

// OnConflict resolves two concurrent versions with the on_conflict hook.
// ok is false when no hook with on_conflict matches the key: the caller
// uses last-writer-wins. Otherwise the result is the hook's value, or
// deleted when it returned nil. When the hook fails or times out, err is
// set (wrapping ErrHook) and the caller falls back to last-writer-wins;
// the failure is counted in Stats.Fallbacks.
//
// The hook runs in the deterministic sandbox — no ck.get, ck.node,
// math.random or math.randomseed, read-only globals — with its hook's
// timeout, so every node resolving the same pair computes the same value.
func (e *Engine) OnConflict(key string, winner, loser Version) (value []byte, deleted bool, ok bool, err error) {
	h := e.Match(key)
	if !h.Has(KindConflict) {
		return nil, false, false, nil
	}
	resp := e.do(context.Background(), &request{
		hook: h, kind: KindConflict, conflict: true, key: key, winner: luaVersion(winner), loser: luaVersion(loser),
	})
	switch {
	case resp.err != nil:
		e.stats.fallbacks.Add(1)
		return nil, false, true, resp.err
	case resp.undefined:
		return nil, false, false, nil
	case resp.isNil:
		return nil, true, true, nil
	}
	if err := e.checkSize(h, KindConflict, resp.value); err != nil {
		e.stats.fallbacks.Add(1)
		return nil, false, true, err
	}
	return resp.value, false, true, nil
}

// checkSize refuses a value to be stored that is larger than MaxValueSize
// (a script can build one with `..`).
func (e *Engine) checkSize(h *Hook, kind Kind, v []byte) error {
	if len(v) <= e.cfg.MaxValueSize {
		return nil
	}
	e.stats.errors.Add(1)
	return fmt.Errorf("%w: %s: %s returned %d bytes, more than max_value_size (%d)", ErrHook, h.Script, kind, len(v), e.cfg.MaxValueSize)
}
