package scripting

import (
	"context"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// How a call's globals are isolated (sandbox.go). Both benchmarks run a
// typical hook — a chunk defining two functions and a constant table,
// then on_set — directly on one sandbox, without the pool's goroutine
// hand-off, so they compare only the isolation strategy.

const envBenchScript = `
local limits = {max = 10}
local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
function on_set(key, value, meta)
  if #value > limits.max then return nil, "too long" end
  return trim(value)
end
function on_get(key, value, meta) return value end
`

func benchSandbox(b *testing.B) (*sandbox, *Hook) {
	b.Helper()
	e := engine(b, envBenchScript)
	h := e.Match("k")
	sb := newSandbox(e)
	b.Cleanup(sb.L.Close)
	sb.call = callState{ctx: context.Background(), budget: e.cfg.MemoryBudget, hook: h}
	sb.L.SetContext(context.Background())
	return sb, h
}

func callOnSet(b *testing.B, L *lua.LState, fn lua.LValue) {
	L.Push(fn)
	L.Push(lua.LString("k"))
	L.Push(lua.LString(" v "))
	L.Push(L.CreateTable(0, 3))
	if err := L.PCall(3, 2, nil); err != nil {
		b.Fatal(err)
	}
	L.SetTop(0)
}

// BenchmarkEnvFreshChunk: a new environment and a fresh run of the chunk
// per call (what the engine does).
func BenchmarkEnvFreshChunk(b *testing.B) {
	sb, h := benchSandbox(b)
	L := sb.L
	for b.Loop() {
		env, globals, _ := sb.newEnv(false)
		chunk := L.NewFunctionFromProto(h.proto)
		chunk.Env = env
		L.Push(chunk)
		if err := L.PCall(0, 0, nil); err != nil {
			b.Fatal(err)
		}
		callOnSet(b, L, globals.RawGetString("on_set"))
	}
}

// BenchmarkEnvReset: one environment per state, the chunk run once, and
// after each call every global restored to its value after the chunk.
func BenchmarkEnvReset(b *testing.B) {
	sb, h := benchSandbox(b)
	L := sb.L
	env, _, _ := sb.newEnv(false)
	chunk := L.NewFunctionFromProto(h.proto)
	chunk.Env = env
	L.Push(chunk)
	if err := L.PCall(0, 0, nil); err != nil {
		b.Fatal(err)
	}
	snapshot := map[lua.LValue]lua.LValue{}
	env.ForEach(func(k, v lua.LValue) { snapshot[k] = v })
	for b.Loop() {
		callOnSet(b, L, env.RawGetString("on_set"))
		var extra []lua.LValue
		env.ForEach(func(k, v lua.LValue) {
			if snapshot[k] != v {
				extra = append(extra, k)
			}
		})
		for _, k := range extra {
			env.RawSet(k, lua.LNil)
		}
		for k, v := range snapshot {
			if env.RawGet(k) != v {
				env.RawSet(k, v)
			}
		}
	}
}
