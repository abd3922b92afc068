package scripting

import (
	"context"
	"math/rand/v2"

	lua "github.com/yuin/gopher-lua"
)

// The sandbox of one Lua state (docs/PROTOCOL.md, Lua hooks).
//
// What a script can reach: the base functions on an allowlist (no load,
// loadstring, dofile, loadfile, require, module, getfenv, setfenv,
// collectgarbage, print, newproxy), string without dump, table, math
// (without random and randomseed in conflict hooks), and ck. There is no
// io, os, debug, package, channel or coroutine.
//
// How globals are kept from leaking between calls: every call runs the
// script's compiled chunk afresh in a new, empty environment table whose
// metatable's __index is the base table of this state. Whatever the call
// assigns — globals, top-level locals, tables its functions close over —
// lives in that call's environment and closures and is garbage after it.
// The only objects shared between calls are the library tables (string,
// table, math, ck, ck.json), which are frozen: read-only proxies whose
// metatable is protected, with rawset, table.insert/remove/sort refusing
// them. The base table itself is unreachable (_G is the call's own
// environment, getmetatable(_G) returns false). The string metatable is
// protected too — getmetatable("") returns false — and its __index is a
// table holding only the allowed string functions, so `("").x` cannot
// reach anything string.x cannot. setmetatable accepts only tables
// (gopher-lua would otherwise let a script install a metatable for all
// numbers or functions of the state).
//
// Why a fresh run of the chunk per call rather than one persistent
// environment per state, reset after each call: BenchmarkEnvFreshChunk and
// BenchmarkEnvReset (env_bench_test.go) measure both on a typical hook
// (two functions, a constant table). On the 2-core test machine the fresh
// run costs ~3.5 µs a call and the reset ~1.3 µs: the fresh run is slower
// by ~2 µs, less than half of a whole call (BenchmarkHookCallOverhead,
// ~5 µs). We pay it because only a fresh run also resets what a script
// keeps in top-level locals (`local cache = {}` mutated by on_set), which
// a reset of globals misses — and which would make on_conflict's result
// depend on which pooled state ran it. (Most of the fresh run's cost was
// Lua 5.0's implicit `arg` table; see dropCompatArg.)

const (
	// callStackSize bounds Lua call depth: deep recursion fails with
	// "stack overflow" (Lua 5.1's own C-call limit is 200).
	callStackSize = 200
	// The Lua value stack starts at registrySize slots and may grow to
	// registryMaxSize (1 MiB of values), failing with "registry
	// overflow" beyond — which bounds unpack, string.byte and select.
	registrySize     = 1024 * 4
	registryMaxSize  = 1024 * 64
	registryGrowStep = 1024 * 4
)

// callState is what a sandbox knows about the call it is running.
type callState struct {
	ctx    context.Context
	budget int64      // bytes left for capped built-ins
	raised lua.LValue // the last value passed to error() or a failed assert
	logs   int        // ck.log lines written
	hook   *Hook
	key    string
	rng    *rand.Rand // set by math.randomseed for this call only
}

type sandbox struct {
	eng  *Engine
	L    *lua.LState
	call callState

	envMT          *lua.LTable // metatable of a call's environment: __index = base
	conflictBase   *lua.LTable // the base for on_conflict: no ck.get, ck.node, math.random
	jsonNull       *lua.LUserData
	jsonArrayMT    *lua.LTable
	jsonObjectMT   *lua.LTable
	readOnlyGlobal *lua.LFunction // __newindex of a frozen conflict environment
}

func newSandbox(eng *Engine) *sandbox {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    callStackSize,
		RegistrySize:     registrySize,
		RegistryMaxSize:  registryMaxSize,
		RegistryGrowStep: registryGrowStep,
		// A fixed call stack (200 frames, a few KiB): the growing one's
		// overflow check is off by one in gopher-lua 1.1.1 and overflows
		// with a Go panic instead of the Lua error "stack overflow".
		MinimizeStackMemory: false,
	})
	sb := &sandbox{eng: eng, L: L}
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	sb.build()
	return sb
}

// gfn returns the Go function behind a library function gopher-lua opened.
func gfn(t *lua.LTable, name string) lua.LGFunction {
	return t.RawGetString(name).(*lua.LFunction).GFunction
}

func (sb *sandbox) build() {
	L := sb.L
	// Take gopher-lua's global table, with its unrestricted functions, out
	// of the state: what follows picks from it, and every function made
	// from here on has the empty table as its environment.
	g := L.G.Global
	L.G.Global = L.NewTable()
	L.Env = L.G.Global
	gStr := g.RawGetString("string").(*lua.LTable)
	gTab := g.RawGetString("table").(*lua.LTable)
	gMath := g.RawGetString("math").(*lua.LTable)

	str := sb.lib(map[string]lua.LGFunction{
		"byte": gfn(gStr, "byte"), "char": gfn(gStr, "char"), "len": gfn(gStr, "len"),
		"lower": strLower, "upper": strUpper,
		"reverse": gfn(gStr, "reverse"), "sub": gfn(gStr, "sub"),
		"rep": sb.strRep, "format": sb.strFormat,
		"find": sb.strFind, "match": sb.strMatch, "gmatch": sb.strGmatch, "gsub": sb.strGsub,
	})
	tab := sb.lib(map[string]lua.LGFunction{
		"concat": sb.tableConcat, "getn": gfn(gTab, "getn"), "maxn": gfn(gTab, "maxn"),
		"insert": guardFrozen(gfn(gTab, "insert"), "table.insert"),
		"remove": guardFrozen(gfn(gTab, "remove"), "table.remove"),
		"sort":   guardFrozen(gfn(gTab, "sort"), "table.sort"),
	})
	mathLib, mathConflict := L.NewTable(), L.NewTable()
	gMath.ForEach(func(k, v lua.LValue) {
		switch k.String() {
		case "random", "randomseed":
		default:
			mathLib.RawSet(k, v)
			mathConflict.RawSet(k, v)
		}
	})
	mathLib.RawSetString("random", L.NewFunction(sb.mathRandom))
	mathLib.RawSetString("randomseed", L.NewFunction(sb.mathRandomseed))

	// Strings index a table of the allowed functions, behind a protected
	// metatable.
	strMT := L.NewTable()
	strMT.RawSetString("__index", str)
	strMT.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(lua.LString(""), strMT)

	ck, ckConflict := sb.ckModules()
	base := sb.baseTable(g)
	conflict := L.NewTable()
	base.ForEach(func(k, v lua.LValue) { conflict.RawSet(k, v) })
	shared := map[string]*lua.LTable{"string": str, "table": tab}
	for name, t := range shared {
		base.RawSetString(name, freeze(L, t, name))
		conflict.RawSetString(name, freeze(L, t, name))
	}
	base.RawSetString("math", freeze(L, mathLib, "math"))
	conflict.RawSetString("math", freeze(L, mathConflict, "math"))
	base.RawSetString("ck", ck)
	conflict.RawSetString("ck", ckConflict)

	sb.envMT = L.NewTable()
	sb.envMT.RawSetString("__index", base)
	sb.envMT.RawSetString("__metatable", lua.LFalse)
	sb.conflictBase = conflict
	sb.readOnlyGlobal = L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("on_conflict must not write globals (assigned %q)", L.Get(2).String())
		return 0
	})
}

// lib builds a table of Go functions.
func (sb *sandbox) lib(fns map[string]lua.LGFunction) *lua.LTable {
	t := sb.L.NewTable()
	for name, fn := range fns {
		t.RawSetString(name, sb.L.NewFunction(fn))
	}
	return t
}

// baseTable is the allowlist of base functions, taken from g, the
// globals gopher-lua's OpenBase made.
func (sb *sandbox) baseTable(g *lua.LTable) *lua.LTable {
	L := sb.L
	setmetatable, rawset := gfn(g, "setmetatable"), gfn(g, "rawset")
	base := L.NewTable()
	for _, name := range []string{
		"ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "select",
		"getmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
	} {
		base.RawSetString(name, g.RawGetString(name))
	}
	base.RawSetString("error", L.NewFunction(sb.luaError))
	base.RawSetString("assert", L.NewFunction(sb.luaAssert))
	base.RawSetString("rawset", L.NewFunction(guardFrozen(rawset, "rawset")))
	base.RawSetString("setmetatable", L.NewFunction(func(L *lua.LState) int {
		L.CheckTable(1) // only tables: not the shared metatables of other types
		return setmetatable(L)
	}))
	return base
}

// freeze returns a read-only proxy of t.
func freeze(L *lua.LState, t *lua.LTable, name string) *lua.LTable {
	mt := L.NewTable()
	mt.RawSetString("__index", t)
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("attempt to modify read-only table %s", name)
		return 0
	}))
	mt.RawSetString("__metatable", lua.LFalse)
	mt.RawSetString("__frozen", lua.LTrue)
	p := L.NewTable()
	p.Metatable = mt
	return p
}

// isFrozen reports whether t is a read-only proxy (or a conflict hook's
// environment after its chunk ran).
func isFrozen(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt.RawGetString("__frozen") == lua.LTrue
}

// luaError is error(): it notes the value so that the call can tell a
// script's deliberate error (a rejection) from a runtime error.
func (sb *sandbox) luaError(L *lua.LState) int {
	obj := L.Get(1)
	level := L.OptInt(2, 1)
	sb.call.raised = obj
	L.Error(obj, level)
	return 0
}

// luaAssert is assert(), noting its message like error().
func (sb *sandbox) luaAssert(L *lua.LState) int {
	if !L.ToBool(1) {
		msg := L.OptString(2, "assertion failed!")
		sb.call.raised = lua.LString(msg)
		L.RaiseError("%s", msg)
	}
	return L.GetTop()
}

// checkCtx calls fail when the call's context has ended.
func (sb *sandbox) checkCtx(fail func(msg string)) {
	select {
	case <-sb.call.ctx.Done():
		fail("stopped: " + context.Cause(sb.call.ctx).Error())
	default:
	}
}

// newEnv returns a fresh environment for one call. For on_conflict it
// also returns the function that freezes it once the chunk has run.
func (sb *sandbox) newEnv(conflict bool) (env *lua.LTable, globals *lua.LTable, freeze func()) {
	L := sb.L
	if !conflict {
		env = L.CreateTable(0, 4)
		env.Metatable = sb.envMT
		env.RawSetString("_G", env)
		return env, env, nil
	}
	// Chunk and hook see `outer`, which stays empty: reads fall through to
	// `inner` (the script's globals, then the conflict base); writes go to
	// `inner` through __newindex while the chunk runs, and raise after.
	inner := L.CreateTable(0, 4)
	innerMT := L.CreateTable(0, 1)
	innerMT.RawSetString("__index", sb.conflictBase)
	inner.Metatable = innerMT
	outer := L.CreateTable(0, 0)
	mt := L.CreateTable(0, 4)
	mt.RawSetString("__index", inner)
	mt.RawSetString("__newindex", inner)
	mt.RawSetString("__metatable", lua.LFalse)
	mt.RawSetString("__frozen", lua.LTrue) // rawset(_G, ...) would bypass __newindex
	outer.Metatable = mt
	inner.RawSetString("_G", outer)
	return outer, inner, func() {
		mt.RawSetString("__newindex", sb.readOnlyGlobal)
	}
}
