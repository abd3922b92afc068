package scripting

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// heapNow is the watchdog's heap measure, after a collection so that
// garbage of earlier tests does not raise the baseline.
func heapNow() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// hostileEngine has a well-behaved hook on "ok/*" and src's on_set on
// every other key, so each test can check the engine still serves calls
// after the hostile one.
func hostileEngine(t *testing.T, src string, hookTimeout time.Duration) *Engine {
	t.Helper()
	dir := t.TempDir()
	e, err := New(Config{
		Hooks: []HookSpec{
			{Pattern: "ok/*", Script: script(t, dir, "ok.lua", `function on_set(k, v) return v:upper() end`), Timeout: testTimeout},
			{Pattern: "*", Script: script(t, dir, "hostile.lua", "function on_set(key, value, meta)\n"+src+"\nend\n"), Timeout: hookTimeout},
		},
		PoolSize:     2,
		MemoryBudget: 4 << 20,
		HeapLimit:    heapNow() + 96<<20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// settle waits until no abandoned state is still running, so that a
// runaway script of one test does not slow the next.
func settle(t *testing.T, e *Engine) {
	t.Helper()
	checkFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if n := e.Stats().AbandonedRunning; n > 0 {
			return fmt.Errorf("%d abandoned states still running", n)
		}
		return nil
	})
}

// stillServes checks the engine answers a normal call once a state is free.
func stillServes(t *testing.T, e *Engine) {
	t.Helper()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		out, err := e.OnSet(bg, "ok/1", []byte("fine"), Meta{Op: "set"})
		if err != nil {
			return err
		}
		if string(out) != "FINE" {
			return fmt.Errorf("ok hook returned %q", out)
		}
		return nil
	})
}

func TestHostileScripts(t *testing.T) {
	const hookTimeout = 250 * time.Millisecond
	// slack covers a busy machine; the point is that the caller never
	// waits for the runaway code itself. The wait that remains is the one
	// instruction in flight when the deadline passes — a concatenation's
	// copy — during which the Go runtime cannot preempt or stop the world.
	slack := 400 * time.Millisecond
	if raceEnabled {
		slack *= 4
	}
	tests := []struct {
		name string
		src  string
		want string // substring of the error; "" means the call must succeed with "absent"
	}{
		{"busy loop", `while true do end`, "timeout"},
		{"busy loop in pcall", `while true do pcall(function() while true do end end) end`, "timeout"},
		{"concat bomb", `local x = "x" while true do x = x .. x end`, "hook error"},
		{"table growth", `local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end`, "hook error"},
		{"huge array index", `local t = {} for i = 1, 100 do t[5e7 + i] = i end return "absent"`, ""},
		{"string.rep 1e10", `return string.rep("x", 1e10)`, "memory budget"},
		{"string.rep chain", `return string.rep("x", 1e6):rep(1e4)`, "memory budget"},
		{"rep loop", `local s = "" for i = 1, 100 do s = string.rep("x", 1e6) end return "absent"`, "memory budget"},
		{"format width", `return string.format("%999999999d", 1)`, "invalid format"},
		{"format star", `return string.format("%*d", 1000000, 1)`, "invalid option"},
		{"format big", `local s = string.rep("x", 4e6) return string.format("%q%q%q", s, s, s)`, "memory budget"},
		{"table.concat", `local t = {} local s = string.rep("x", 1e6) for i = 1, 100 do t[i] = s end return table.concat(t)`, "memory budget"},
		{"gsub amplify", `local s = string.rep("x", 1e6) return (s:gsub(".", string.rep("y", 1000)))`, "memory budget"},
		{"json amplify", `local s = string.rep("x", 1e6) local t = {} for i = 1, 40 do t[i] = s end return ck.json.encode(t)`, "hook error"},
		{"backtracking (.-)*b", `return tostring(string.find(string.rep("a", 1e6), "(.-)*b"))`, "timeout"},
		{"backtracking a*a*a*b", `return tostring(string.find(string.rep("a", 1e5), "a*a*a*a*a*a*b"))`, "timeout"},
		{"backtracking match", `return tostring(string.match(string.rep("a", 1e6), ".-.-.-.-$b"))`, "timeout"},
		{"backtracking gmatch", `for w in string.gmatch(string.rep("a", 1e6), "a-a-a-b") do end return "absent"`, "timeout"},
		{"backtracking gsub", `return (string.gsub(string.rep("a", 1e6), "(a*)(a*)(a*)b", "x"))`, "timeout"},
		{"huge subject", `local s = string.rep("x", 1e6) s = s .. s .. s .. s .. s return tostring(s:find("y"))`, "max_value_size"},
		{"deep recursion", `local function f(n) return 1 + f(n + 1) end return f(1)`, "stack overflow"},
		{"metamethod recursion", `local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x`, "stack overflow"},
		{"gsub recursion", `local function f(s) return (s:gsub(".", f)) end return f("abc")`, "stack overflow"},
		{"pcall recursion", `local function f() return pcall(f) end f() return "absent"`, ""},
		// On a loaded machine the timeout may come before the overflow:
		// either way the call fails in time.
		{"unpack flood", `return select("#", unpack({}, 1, 1e8))`, "registry overflow|timeout"},
		{"string.byte flood", `return select("#", string.rep("x", 4e6):byte(1, -1))`, "registry overflow|timeout"},
		{"deep json encode", `local t = {} for i = 1, 5000 do t = {t} end return ck.json.encode(t)`, "nesting too deep"},
		{"cyclic json", `local t = {} t.self = t return ck.json.encode(t)`, "cyclic"},
		{"deep json decode", `local v, err = ck.json.decode(string.rep("[", 5000)) error(err)`, "nesting too deep"},
		{"os.exit", `os.exit(1)`, "nil"},
		{"io.open", `io.open("/etc/passwd")`, "nil"},
		{"require", `require("os")`, "non-function"},
		{"load", `load("return 1")`, "non-function"},
		{"loadstring", `loadstring("return 1")`, "non-function"},
		{"dofile", `dofile("/etc/passwd")`, "non-function"},
		{"debug", `debug.getregistry()`, "nil"},
		{"string.dump", `string.dump(on_set)`, "non-function"},
		{"method dump", `("x"):dump()`, "non-function"},
		{"getmetatable string", `return getmetatable("").__index.rep`, "boolean"},
		{"setmetatable string", `setmetatable("", {__index = {}})`, "table expected"},
		{"setmetatable number", `setmetatable(1, {__index = function() return 7 end})`, "table expected"},
		{"setmetatable _G", `setmetatable(_G, {__index = function() return "leak" end})`, "protected metatable"},
		{"setmetatable string lib", `setmetatable(string, nil)`, "protected metatable"},
		{"rawset string lib", `rawset(string, "rep", function() return "leak" end)`, "read-only"},
		{"assign string lib", `string.upper = function() return "leak" end`, "read-only"},
		{"assign math", `math.pi = 3`, "read-only"},
		{"assign ck", `ck.node = "evil"`, "read-only"},
		{"assign ck.json", `ck.json.null = 1`, "read-only"},
		{"table.insert lib", `table.insert(string, "leak")`, "read-only"},
		{"null metatable", `return getmetatable(ck.json.null).__index`, "boolean"},
		{"absent globals", `
for _, name in ipairs({"os", "io", "debug", "package", "channel", "coroutine", "require", "module",
  "load", "loadstring", "loadfile", "dofile", "getfenv", "setfenv", "collectgarbage", "print",
  "newproxy", "_printregs", "_GOPHER_LUA_VERSION"}) do
  if _G[name] ~= nil then error(name .. " is present") end
end
if string.dump ~= nil or string.gfind ~= nil then error("string.dump present") end
return "absent"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A case that a limit other than the timeout must stop gets a
			// long timeout: on a loaded machine (a -race run beside other
			// work) 250 ms can pass before the limit is reached, and the
			// case would then say nothing of that limit.
			to := hookTimeout
			if tt.want != "" && !strings.Contains(tt.want, "timeout") {
				to = 10 * time.Second
			}
			e := hostileEngine(t, tt.src, to)
			start := time.Now()
			out, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
			took := time.Since(start)
			if tt.want == "" {
				if err != nil || string(out) != "absent" {
					t.Fatalf("OnSet = %q, %v; want success", out, err)
				}
			} else if err == nil || !containsAny(err.Error(), strings.Split(tt.want, "|")) {
				t.Fatalf("OnSet = %q, %v; want an error containing %q", out, err, tt.want)
			} else if !errors.Is(err, ErrHook) && !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v wraps neither ErrHook nor ErrRejected", err)
			}
			if took > to+slack {
				t.Errorf("call took %v; want at most its timeout (%v) plus slack", took, to)
			}
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
			stillServes(t, e)
			settle(t, e)
		})
	}
}

// Lowering lua.MaxArrayIndex keeps a sparse index from allocating a
// gigabyte in one instruction; the table still works.
func TestSparseIndex(t *testing.T) {
	e := engine(t, `function on_set() local t = {} t[5e7] = "x" t[1] = "a" return #t .. t[5e7] end`)
	out, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
	if err != nil || string(out) != "1x" {
		t.Fatalf("OnSet = %q, %v", out, err)
	}
}

func TestAbandonedStateIsNotReused(t *testing.T) {
	e := engine(t, `function on_set(k, v) if k == "spin" then while true do end end return v end`,
		timeout(50*time.Millisecond), func(c *Config) { c.PoolSize = 1 })
	first := e.pool.idle[0] // the state New ran the chunk on
	start := time.Now()
	_, err := e.OnSet(bg, "spin", []byte("v"), Meta{Op: "set"})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v; want a timeout", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("timed-out call returned after %v", took)
	}
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if st := e.Stats(); st.PoolLive != 0 || st.AbandonedRunning != 0 {
			return fmt.Errorf("abandoned state still live: %+v", st)
		}
		return nil
	})
	if !first.sb.L.IsClosed() {
		t.Error("abandoned state was not closed")
	}
	if out, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"}); err != nil || string(out) != "v" {
		t.Fatalf("after abandonment: %q, %v", out, err)
	}
	if len(e.pool.idle) != 1 || e.pool.idle[0] == first {
		t.Fatal("the abandoned state is back in the pool")
	}
	if st := e.Stats(); st.Abandoned != 1 {
		t.Errorf("Abandoned = %d; want 1", st.Abandoned)
	}
}

func TestHeapWatchdogCancelsConcatBomb(t *testing.T) {
	// A long timeout, so that only the watchdog can stop it; the loop is
	// bounded (256 MiB) in case the watchdog does not.
	e := engine(t, `function on_set(k, v)
  local x = string.rep("x", 1024)
  for i = 1, 18 do x = x .. x end
  return "finished"
end`, timeout(20*time.Second), func(c *Config) { c.HeapLimit = heapNow() + 32<<20 })
	start := time.Now()
	out, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
	if !errors.Is(err, ErrHeapLimit) || !errors.Is(err, ErrHook) {
		t.Fatalf("OnSet = %q, %v; want the heap limit to stop it", out, err)
	}
	t.Logf("%v after %v", err, time.Since(start))
	if st := e.Stats(); st.HeapCancels != 1 {
		t.Errorf("HeapCancels = %d", st.HeapCancels)
	}
	settle(t, e)
}

func TestCallerContextCancels(t *testing.T) {
	e := engine(t, `function on_set(k, v) while true do end end`, timeout(10*time.Second))
	ctx, cancel := contextWithTimeout(30 * time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.OnSet(ctx, "k", []byte("v"), Meta{Op: "set"})
	if !errors.Is(err, ErrHook) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	settle(t, e)
}

// The memory budget is shared by the capped built-ins of one call and
// starts afresh with the next call.
func TestMemoryBudgetIsPerCall(t *testing.T) {
	e := engine(t, `function on_set(k, v)
  if k == "json" then
    local t = {} for i = 1, 10 do t[i] = string.rep("y", 100) end -- 1000 bytes of rep
    return ck.json.encode(t)                                     -- + 1000 more
  end
  local a = string.rep("x", 600) -- 600 of 1500
  local b = a:upper():rep(1)     -- 1200
  local c = string.format("%s", a) -- 1800: over
  return "unreachable"
end`, func(c *Config) { c.MemoryBudget = 1500 })
	for i := 0; i < 3; i++ {
		_, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
		if !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "string.format: result of up to") {
			t.Fatalf("call %d: %v; want the third built-in over budget", i, err)
		}
	}
	if _, err := e.OnSet(bg, "json", []byte("v"), Meta{Op: "set"}); !strings.Contains(err.Error(), "ck.json.encode: result exceeds the hook memory budget") {
		t.Fatalf("json: %v", err)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
