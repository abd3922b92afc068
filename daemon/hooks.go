package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/scripting"
	"github.com/cloudknowledge/ck/store"
)

// hookSet holds the running Lua hooks. Reload swaps in a newly compiled
// engine atomically; calls in flight finish on the engine they started on.
type hookSet struct {
	cur atomic.Pointer[scripting.Engine]
	log hclog.Logger
	get func(string) ([]byte, bool, error)

	retiredMu sync.Mutex
	retired   scripting.Stats // counters of engines replaced by reloads
}

func loadHooks(cfg Config, log hclog.Logger, get func(string) ([]byte, bool, error)) (*hookSet, error) {
	h := &hookSet{log: log, get: get}
	if err := h.reload(cfg); err != nil {
		return nil, err
	}
	return h, nil
}

// reload compiles cfg's hooks and, only if every script compiles, puts
// them in force.
func (h *hookSet) reload(cfg Config) error {
	eng, err := compileHooks(cfg, h.log, h.get)
	if err != nil {
		return err
	}
	if old := h.cur.Swap(eng); old != nil {
		old.Close()
		h.retire(old.Stats())
	}
	return nil
}

// compileHooks compiles cfg's hooks into an engine: the start, a reload
// and ckd -check (Config.Check) all compile them here.
func compileHooks(cfg Config, log hclog.Logger, get func(string) ([]byte, bool, error)) (*scripting.Engine, error) {
	timeouts := cfg.Durations().Hooks // one per hook once cfg is validated
	specs := make([]scripting.HookSpec, 0, len(cfg.Hooks))
	for i, hc := range cfg.Hooks {
		timeout := defaultHookTimeout
		if i < len(timeouts) {
			timeout = timeouts[i]
		}
		specs = append(specs, scripting.HookSpec{Pattern: hc.Pattern, Script: cfg.ScriptPath(hc), Timeout: timeout})
	}
	return scripting.New(scripting.Config{
		Hooks:        specs,
		PoolSize:     cfg.HookPool,
		MemoryBudget: cfg.HookMemory,
		HeapLimit:    uint64(cfg.HookHeapLimit),
		MaxValueSize: cfg.MaxValueSize,
		Logger:       log,
		NodeName:     cfg.NodeName,
		Get:          get,
	})
}

// retire adds a replaced engine's counters to the running totals, so that
// metrics stay monotonic across reloads.
func (h *hookSet) retire(s scripting.Stats) {
	h.retiredMu.Lock()
	defer h.retiredMu.Unlock()
	h.retired = h.retired.Add(s)
}

// Stats are the hook counters since start, across reloads; the gauges are
// the current engine's.
func (h *hookSet) Stats() scripting.Stats {
	var s scripting.Stats
	if e := h.cur.Load(); e != nil {
		s = e.Stats()
	}
	h.retiredMu.Lock()
	defer h.retiredMu.Unlock()
	return s.Add(h.retired)
}

// Close stops the engine.
func (h *hookSet) Close() {
	if e := h.cur.Swap(nil); e != nil {
		e.Close()
	}
}

// Hash identifies the hook configuration; peers compare it (HELLO).
func (h *hookSet) Hash() string {
	if e := h.cur.Load(); e != nil {
		return e.Hash()
	}
	return ""
}

// hasOnSet reports whether an on_set hook applies to key.
func (h *hookSet) hasOnSet(key string) bool {
	e := h.cur.Load()
	return e != nil && e.Match(key).Has(scripting.KindSet)
}

func (h *hookSet) onSet(ctx context.Context, key string, value []byte, meta scripting.Meta) ([]byte, error) {
	e := h.cur.Load()
	if e == nil {
		return value, nil
	}
	out, err := e.OnSet(ctx, key, value, meta)
	return out, hookError(err)
}

func (h *hookSet) onGet(ctx context.Context, key string, value []byte, meta scripting.Meta) ([]byte, error) {
	e := h.cur.Load()
	if e == nil {
		return value, nil
	}
	out, err := e.OnGet(ctx, key, value, meta)
	return out, hookError(err)
}

// hookError maps scripting errors onto the API's codes.
func hookError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, scripting.ErrRejected):
		return rpc.Errorf(rpc.ErrHookRejected, "%v", err)
	default:
		return rpc.Errorf(rpc.ErrHookError, "%v", err)
	}
}

// conflictResolver is the store's Resolver: the on_conflict hook matching
// the key, else last-writer-wins. A failing hook falls back to
// last-writer-wins (the store marks the record), logged and counted.
type conflictResolver struct{ h *hookSet }

func (r conflictResolver) Resolve(key string, winner, loser *store.Record) ([]byte, bool, error) {
	e := r.h.cur.Load()
	if e == nil {
		return winner.Value, winner.Deleted, nil
	}
	value, deleted, ok, err := e.OnConflict(key, version(winner), version(loser))
	if err != nil {
		r.h.log.Warn("on_conflict failed; last-writer-wins decides", "key", key, "error", err)
		return nil, false, err
	}
	if !ok {
		return winner.Value, winner.Deleted, nil
	}
	return value, deleted, nil
}

func version(r *store.Record) scripting.Version {
	return scripting.Version{Value: r.Value, Deleted: r.Deleted, Lamport: r.Lamport, Origin: r.Origin.String()}
}

// localGet is ck.get: a local, read-only lookup for hooks. A hook runs
// within an API call that holds the instance, so the one in the slot is
// the one it runs on.
func (d *Daemon) localGet(key string) ([]byte, bool, error) {
	inst := d.slot.peek()
	if inst == nil {
		return nil, false, nil
	}
	r, found, err := inst.store.Get(key)
	if err != nil || !found || r.Deleted {
		return nil, false, err
	}
	return r.Value, true, nil
}
