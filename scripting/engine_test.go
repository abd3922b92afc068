package scripting

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOnSet(t *testing.T) {
	e := engine(t, `
function on_set(key, value, meta)
  if key == "upper" then return value:upper() end
  if key == "keep" then return nil end
  if key == "reject" then error("values here are read-only") end
  if key == "reject2" then return nil, "too short" end
  if key == "reject-assert" then assert(#value > 10, "need more than 10 bytes") end
  if key == "number" then return 42 end
  if key == "float" then return 1.5 end
  if key == "table" then return {} end
  if key == "bool" then return true end
  if key == "runtime" then local t = nil; return t.x end
  if key == "del" then
    if meta.op == "del" and value == nil then error("no deleting " .. key) end
    return "unreachable"
  end
  if key == "meta" then return meta.node .. "/" .. meta.op .. "/" .. meta.version end
  if key == "huge" then local s = string.rep("x", 1e6) return s .. s .. s .. s .. s end
  return nil
end`)
	tests := []struct {
		key, value string
		meta       Meta
		want       string
		wantErr    error  // errors.Is target; nil for success
		msg        string // substring of the error message
	}{
		{key: "upper", value: "abc", want: "ABC"},
		{key: "keep", value: "abc", want: "abc"},
		{key: "other", value: "abc", want: "abc"},
		{key: "reject", value: "abc", wantErr: ErrRejected, msg: "values here are read-only"},
		{key: "reject2", value: "abc", wantErr: ErrRejected, msg: "too short"},
		{key: "reject-assert", value: "abc", wantErr: ErrRejected, msg: "need more than 10 bytes"},
		{key: "number", value: "abc", want: "42"},
		{key: "float", value: "abc", want: "1.5"},
		{key: "table", value: "abc", wantErr: ErrHook, msg: "returned a table"},
		{key: "bool", value: "abc", wantErr: ErrHook, msg: "returned a boolean"},
		{key: "runtime", value: "abc", wantErr: ErrHook, msg: "hook.lua:12:"},
		{key: "del", meta: Meta{Op: "del"}, wantErr: ErrRejected, msg: "no deleting del"},
		{key: "meta", value: "x", meta: Meta{Node: "n1", Op: "set", Version: 7}, want: "n1/set/7"},
		{key: "huge", value: "x", wantErr: ErrHook, msg: "more than max_value_size"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if tt.meta.Op == "" {
				tt.meta.Op = "set"
			}
			var value []byte
			if tt.meta.Op == "set" {
				value = []byte(tt.value)
			}
			out, err := e.OnSet(bg, tt.key, value, tt.meta)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v; want %v containing %q", err, tt.wantErr, tt.msg)
				}
				if errors.Is(err, ErrRejected) && err.Error() != tt.msg {
					t.Errorf("rejection message = %q; want the bare reason %q", err.Error(), tt.msg)
				}
				return
			}
			if err != nil || string(out) != tt.want {
				t.Fatalf("OnSet = %q, %v; want %q", out, err, tt.want)
			}
		})
	}
	st := e.Stats()
	if st.Calls != uint64(len(tests)) || st.Rejections != 4 || st.Errors != 4 {
		t.Errorf("stats = %+v; want %d calls, 4 rejections, 4 errors", st, len(tests))
	}
}

func TestOnSetDeleteKeepsNilValue(t *testing.T) {
	e := engine(t, `function on_set(key, value, meta) return "replaced" end`)
	out, err := e.OnSet(bg, "k", nil, Meta{Op: "del"})
	if err != nil || out != nil {
		t.Fatalf("OnSet(del) = %q, %v; want nil, nil (a delete is not transformed)", out, err)
	}
}

func TestOnGet(t *testing.T) {
	e := engine(t, `
function on_get(key, value, meta)
  if key == "rev" then return value:reverse() end
  if key == "keep" then return nil end
  if key == "fail" then error("boom") end
  if key == "why" then return nil, "nope" end
  return value .. "@" .. meta.node
end`)
	tests := []struct {
		key, want string
		wantErr   string
	}{
		{key: "rev", want: "cba"},
		{key: "keep", want: "abc"},
		{key: "node", want: "abc@n1"},
		{key: "fail", wantErr: "boom"},
		{key: "why", wantErr: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			out, err := e.OnGet(bg, tt.key, []byte("abc"), Meta{Node: "n1", Op: "get"})
			if tt.wantErr != "" {
				if !errors.Is(err, ErrHook) || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want ErrHook with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(out) != tt.want {
				t.Fatalf("OnGet = %q, %v; want %q", out, err, tt.want)
			}
		})
	}
	// OnSet has no on_set here: the value passes through.
	if out, err := e.OnSet(bg, "rev", []byte("abc"), Meta{Op: "set"}); err != nil || string(out) != "abc" {
		t.Fatalf("OnSet without on_set = %q, %v", out, err)
	}
}

func TestOnConflict(t *testing.T) {
	e := engine(t, `
local sep = "+"   -- top-level locals and globals may be read
prefix = "m:"
function on_conflict(key, winner, loser)
  if key == "merge" then return prefix .. winner.value .. sep .. loser.value end
  if key == "delete" then return nil end
  if key == "fail" then error("cannot merge") end
  if key == "why" then return nil, "no" end
  if key == "args" then
    return string.format("%s/%s/%d/%s|%s/%s/%d/%s", tostring(winner.value), tostring(winner.deleted),
      winner.lamport, winner.origin, tostring(loser.value), tostring(loser.deleted), loser.lamport, loser.origin)
  end
  if key == "ck.get" then return tostring(ck.get) end
  if key == "ck.node" then return tostring(ck.node) end
  if key == "random" then return tostring(math.random) .. tostring(math.randomseed) end
  if key == "write-global" then counter = 1 return "wrote" end
  if key == "rewrite-global" then prefix = "x" return "wrote" end
  if key == "rawset-global" then rawset(_G, "y", 1) return "wrote" end
  if key == "write-G" then _G.z = 1 return "wrote" end
  if key == "number" then return winner.lamport + loser.lamport end
  return winner.value
end`)
	w := Version{Value: []byte("a"), Lamport: 5, Origin: "n1"}
	l := Version{Value: []byte("b"), Lamport: 3, Origin: "n2"}
	tests := []struct {
		key         string
		loser       Version
		want        string
		wantDeleted bool
		wantErr     string
	}{
		{key: "merge", want: "m:a+b"},
		{key: "delete", wantDeleted: true},
		{key: "number", want: "8"},
		{key: "args", loser: Version{Deleted: true, Lamport: 4, Origin: "n3"}, want: "a/false/5/n1|nil/true/4/n3"},
		{key: "ck.get", want: "nil"},
		{key: "ck.node", want: "nil"},
		{key: "random", want: "nilnil"},
		{key: "fail", wantErr: "cannot merge"},
		{key: "why", wantErr: "no"},
		{key: "write-global", wantErr: "must not write globals"},
		{key: "rewrite-global", wantErr: "must not write globals"},
		{key: "rawset-global", wantErr: "read-only"},
		{key: "write-G", wantErr: "must not write globals"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			loser := l
			if tt.loser.Origin != "" {
				loser = tt.loser
			}
			v, deleted, ok, err := e.OnConflict(tt.key, w, loser)
			if !ok {
				t.Fatal("ok = false; want the hook to apply")
			}
			if tt.wantErr != "" {
				if !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want ErrHook with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(v) != tt.want || deleted != tt.wantDeleted {
				t.Fatalf("OnConflict = %q, deleted=%v, %v; want %q, deleted=%v", v, deleted, err, tt.want, tt.wantDeleted)
			}
		})
	}
	if got := e.Stats().Fallbacks; got != 6 {
		t.Errorf("Fallbacks = %d; want 6", got)
	}
}

func TestOnConflictWithoutHook(t *testing.T) {
	e := engine(t, `function on_set(k, v) return v end`)
	if _, _, ok, err := e.OnConflict("k", Version{}, Version{}); ok || err != nil {
		t.Fatalf("OnConflict = ok %v, %v; want false, nil", ok, err)
	}
}

func TestOnConflictTopLevelNeedsCk(t *testing.T) {
	dir := t.TempDir()
	p := script(t, dir, "c.lua", "local n = ck.node .. '!'\nfunction on_conflict(k, a, b) return a.value end\n")
	_, err := New(Config{Hooks: []HookSpec{{Pattern: "*", Script: p}}})
	var ce *CompileError
	if !errors.As(err, &ce) || ce.Line != 1 || !strings.Contains(ce.Msg, "ck.node") && !strings.Contains(ce.Msg, "nil") {
		t.Fatalf("New = %v; want a CompileError at line 1 (ck.node is nil in conflict hooks)", err)
	}
}

func TestMatch(t *testing.T) {
	dir := t.TempDir()
	a := script(t, dir, "a.lua", `function on_set(k, v) return "a" end`)
	b := script(t, dir, "b.lua", `function on_get(k, v) return "b" end`)
	c := script(t, dir, "c.lua", `function on_conflict(k, w, l) return "c" end`)
	e, err := New(Config{Hooks: []HookSpec{
		{Pattern: "config/*", Script: a, Timeout: testTimeout},
		{Pattern: "config/special", Script: b, Timeout: testTimeout}, // shadowed by the first
		{Pattern: "user/?/name", Script: b, Timeout: testTimeout},
		{Pattern: "*/counter", Script: c, Timeout: testTimeout},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tests := []struct {
		key    string
		script string // "" for no hook
	}{
		{"config/x", a},
		{"config/a/b/c", a}, // '*' spans '/'
		{"config/special", a},
		{"config", ""},
		{"user/1/name", b},
		{"user/é/name", b}, // '?' is one character, not one byte
		{"user/12/name", ""},
		{"user//name", ""},
		{"a/b/counter", c},
		{"counter", ""},
	}
	for _, tt := range tests {
		h := e.Match(tt.key)
		switch {
		case tt.script == "" && h != nil:
			t.Errorf("Match(%q) = %s; want none", tt.key, h.Script)
		case tt.script != "" && (h == nil || h.Script != tt.script):
			t.Errorf("Match(%q) = %v; want %s", tt.key, h, tt.script)
		}
	}
	if h := e.Match("config/x"); !h.Has(KindSet) || h.Has(KindGet) || h.Has(KindConflict) {
		t.Errorf("Has for a.lua wrong")
	}
	if h := e.Match("nothing"); h.Has(KindSet) {
		t.Errorf("nil Hook Has = true")
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"*", "", true},
		{"*", "a/b", true},
		{"a*", "a", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"**", "x", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.key); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v; want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"syntax.lua", "function on_set(k, v)\n  return v +\nend\n", 3, ""},
		{"unclosed.lua", "function on_set(k, v)\n  if v then\n    return v\nend\n", 5, ""},
		{"toplevel.lua", "local x = 1\nlocal y = nil\nlocal z = y.field\n", 3, "attempt to index"},
		{"error.lua", "\n\nerror('refusing to load')\n", 3, "refusing to load"},
		{"forever.lua", "while true do end\n", 0, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := script(t, dir, tt.name, tt.src)
			_, err := New(Config{Hooks: []HookSpec{{Pattern: "*", Script: p}}})
			var ce *CompileError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompile) {
				t.Fatalf("New = %v; want a CompileError", err)
			}
			if ce.File != p || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.msg) {
				t.Fatalf("CompileError = %q (file %q line %d); want %s:%d containing %q", err, ce.File, ce.Line, p, tt.line, tt.msg)
			}
			if tt.line > 0 && !strings.Contains(err.Error(), p+":") {
				t.Errorf("message %q does not name the file and line", err)
			}
		})
	}
	_, err := New(Config{Hooks: []HookSpec{{Pattern: "*", Script: dir + "/missing.lua"}}})
	if !errors.Is(err, ErrCompile) {
		t.Fatalf("missing file: %v", err)
	}
}

// A script's top level is bounded by discoverTimeout (1 s) when New runs
// it, not by its hook's timeout, which is for calls: a top level that
// takes longer than a 1 ms hook timeout loads, and one that never ends
// fails saying how long it was given.
func TestTopLevelBound(t *testing.T) {
	dir := t.TempDir()
	slow := script(t, dir, "slow.lua", "local n = 0\nfor i = 1, 200000 do n = n + i end\nfunction on_set(k, v) return v end\n")
	start := time.Now()
	e, err := New(Config{Hooks: []HookSpec{{Pattern: "*", Script: slow, Timeout: time.Millisecond}}})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("New with a top level of %v and a 1ms hook timeout: %v", took, err)
	}
	e.Close()
	forever := script(t, dir, "forever.lua", "while true do end\n")
	_, err = New(Config{Hooks: []HookSpec{{Pattern: "*", Script: forever, Timeout: time.Millisecond}}})
	if !errors.Is(err, ErrCompile) || !strings.Contains(err.Error(), "top-level code ran past 1s") {
		t.Fatalf("New with a top level that never ends: %v; want a CompileError saying it ran past 1s", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{Hooks: []HookSpec{{Pattern: "", Script: "x"}}},
		{Hooks: []HookSpec{{Pattern: "*"}}},
		{Hooks: []HookSpec{{Pattern: "*", Script: "x", Timeout: -1}}},
		{PoolSize: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func TestHash(t *testing.T) {
	dir := t.TempDir()
	a := script(t, dir, "a.lua", `function on_set(k, v) return v end`)
	b := script(t, dir, "b.lua", `function on_set(k, v) return v end -- same code, other bytes`)
	hash := func(hooks ...HookSpec) string {
		e, err := New(Config{Hooks: hooks})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		return e.Hash()
	}
	base := hash(HookSpec{Pattern: "x/*", Script: a})
	if again := hash(HookSpec{Pattern: "x/*", Script: a, Timeout: DefaultTimeout}); again != base {
		t.Errorf("hash not stable: %s vs %s", base, again)
	}
	for name, h := range map[string]string{
		"pattern": hash(HookSpec{Pattern: "y/*", Script: a}),
		"timeout": hash(HookSpec{Pattern: "x/*", Script: a, Timeout: time.Second}),
		"bytes":   hash(HookSpec{Pattern: "x/*", Script: b}),
		"none":    hash(),
	} {
		if h == base {
			t.Errorf("changing the %s did not change the hash", name)
		}
	}
}

func TestGlobalsDoNotLeak(t *testing.T) {
	e := engine(t, `
local calls = 0
function on_set(key, value)
  calls = calls + 1
  local seen = tostring(counter) .. "," .. tostring(rawget(_G, "raw")) .. "," .. calls
  counter = (counter or 0) + 1
  rawset(_G, "raw", true)
  setmetatable(_G, nil)
  return seen
end`)
	for i := 0; i < 5; i++ {
		out, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
		if err == nil || !strings.Contains(err.Error(), "protected metatable") {
			t.Fatalf("setmetatable(_G): %q, %v; want an error", out, err)
		}
	}
	e2 := engine(t, `
local calls = 0
function on_set(key, value)
  calls = calls + 1
  local seen = tostring(counter) .. "," .. tostring(rawget(_G, "raw")) .. "," .. calls
  counter = (counter or 0) + 1
  rawset(_G, "raw", true)
  return seen
end`)
	for i := 0; i < 5; i++ {
		out, err := e2.OnSet(bg, "k", []byte("v"), Meta{Op: "set"})
		if err != nil || string(out) != "nil,nil,1" {
			t.Fatalf("call %d saw %q, %v; want nil,nil,1", i, out, err)
		}
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	e := engine(t, `function on_set(k, v) if k == "slow" then while true do end end return v end`,
		timeout(200*time.Millisecond), func(c *Config) { c.PoolSize = 4 })
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ { // create a few states
		wg.Go(func() { e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"}) })
	}
	// Done before the slow call starts, so that a busy state below is
	// the slow call's, not one of these.
	wg.Wait()
	slow := make(chan error, 1)
	go func() {
		_, err := e.OnSet(bg, "slow", []byte("v"), Meta{Op: "set"})
		slow <- err
	}()
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if e.Stats().PoolBusy == 0 {
			return errors.New("the slow call has not started")
		}
		return nil
	})
	e.Close()
	e.Close()
	if _, err := e.OnSet(bg, "k", []byte("v"), Meta{Op: "set"}); !errors.Is(err, ErrHook) || !errors.Is(err, ErrClosed) {
		t.Errorf("OnSet after Close: %v", err)
	}
	if err := <-slow; !errors.Is(err, ErrTimeout) {
		t.Errorf("call running across Close: %v; want its timeout", err)
	}
	// Every state goroutine and the watchdog end.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines; %d before New", n, before)
		}
		return nil
	})
}
