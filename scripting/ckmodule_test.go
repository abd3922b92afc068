package scripting

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestCkGetAndNode(t *testing.T) {
	store := map[string]string{"limits/max": "10"}
	e := engine(t, `
function on_set(key, value, meta)
  if key == "fail" then return ck.get("broken") end
  local max = tonumber(ck.get("limits/max"))
  if #value > max then return nil, "longer than " .. max end
  return value .. "@" .. ck.node .. ":" .. tostring(ck.get("absent"))
end`, func(c *Config) {
		c.NodeName = "node-a"
		c.Get = func(key string) ([]byte, bool, error) {
			if key == "broken" {
				return nil, false, errors.New("disk on fire")
			}
			v, ok := store[key]
			return []byte(v), ok, nil
		}
	})
	if out, err := e.OnSet(bg, "k", []byte("short"), Meta{Op: "set"}); err != nil || string(out) != "short@node-a:nil" {
		t.Errorf("OnSet = %q, %v", out, err)
	}
	if _, err := e.OnSet(bg, "k", []byte("far too long"), Meta{Op: "set"}); !errors.Is(err, ErrRejected) || err.Error() != "longer than 10" {
		t.Errorf("OnSet long = %v", err)
	}
	if _, err := e.OnSet(bg, "fail", []byte("x"), Meta{Op: "set"}); !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("OnSet with a failing Get = %v", err)
	}
}

func TestCkLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{&mu, &buf}, Level: hclog.Trace})
	e := engine(t, `
function on_set(key, value)
  if key == "flood" then for i = 1, 1000 do ck.log("info", "line " .. i) end return nil end
  if key == "bad" then ck.log("loud", "x") end
  ck.log("warn", "saw " .. value)
  ck.log("debug", {})
end`, func(c *Config) { c.Logger = log })
	if _, err := e.OnSet(bg, "k1", []byte("hello"), Meta{Op: "set"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "[WARN]  hooks.lua: saw hello: script=") || !strings.Contains(out, "key=k1") ||
		!strings.Contains(out, "[DEBUG] hooks.lua: table: ") {
		t.Errorf("log output:\n%s", out)
	}
	if _, err := e.OnSet(bg, "bad", []byte("x"), Meta{Op: "set"}); !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "level must be") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := e.OnSet(bg, "flood", []byte("x"), Meta{Op: "set"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	lines := strings.Count(buf.String(), "hooks.lua: line ")
	mu.Unlock()
	if lines != maxLogLines || e.Stats().LogsDropped != 900 {
		t.Errorf("flood wrote %d lines, dropped %d; want %d written", lines, e.Stats().LogsDropped, maxLogLines)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// The same conflict resolves to the same bytes on every state and call:
// pairs order, sorting and JSON encoding are deterministic.
func TestConflictDeterminism(t *testing.T) {
	e := engine(t, `
function on_conflict(key, w, l)
  local a, b = ck.json.decode(w.value), ck.json.decode(l.value)
  local out = {}
  for k, v in pairs(a) do out[#out + 1] = k .. "=" .. tostring(v) end
  for k, v in pairs(b) do out[#out + 1] = k .. "=" .. tostring(v) end
  local merged = {}
  for k, v in pairs(a) do merged[k] = v end
  for k, v in pairs(b) do if merged[k] == nil then merged[k] = v end end
  return table.concat(out, ",") .. "|" .. ck.json.encode(merged)
end`, func(c *Config) { c.PoolSize = 4 })
	w := Version{Value: []byte(`{"z":1,"y":2,"x":3,"w":4,"v":5,"u":6}`), Lamport: 2, Origin: "a"}
	l := Version{Value: []byte(`{"a":1,"b":2,"c":3,"y":9}`), Lamport: 1, Origin: "b"}
	first, _, _, err := e.OnConflict("k", w, l)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				v, _, _, err := e.OnConflict("k", w, l)
				if err != nil || !bytes.Equal(v, first) {
					errs <- fmt.Errorf("got %s, %v; first %s", v, err, first)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	dir := t.TempDir()
	e, err := New(Config{
		Hooks: []HookSpec{
			{Pattern: "json/*", Script: "../examples/hooks/json_validate.lua", Timeout: testTimeout},
			{Pattern: "acct/*", Script: "../examples/hooks/redact.lua", Timeout: testTimeout},
			{Pattern: "sets/*", Script: "../examples/hooks/set_union.lua", Timeout: testTimeout},
			{Pattern: "*", Script: script(t, dir, "echo.lua", `function on_set(k, v) return k .. "=" .. v end`), Timeout: testTimeout},
		},
		PoolSize: 8, // one per caller: no call may find the pool exhausted
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				key := fmt.Sprintf("k%d-%d", g, i)
				if err := oneOfEach(e, key); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := e.Stats(); st.PoolLive > 8 || st.PoolBusy != 0 || st.Calls != 8*100*4 {
		t.Errorf("stats after the run: %+v", st)
	}
}

func oneOfEach(e *Engine, key string) error {
	if out, err := e.OnSet(bg, key, []byte("v"), Meta{Op: "set"}); err != nil || string(out) != key+"=v" {
		return fmt.Errorf("echo: %q, %w", out, err)
	}
	if _, err := e.OnSet(bg, "json/"+key, []byte("{"), Meta{Op: "set"}); !errors.Is(err, ErrRejected) {
		return fmt.Errorf("json_validate accepted '{': %w", err)
	}
	out, err := e.OnGet(bg, "acct/"+key, []byte(`{"token":"t","id":1}`), Meta{Op: "get"})
	if err != nil || string(out) != `{"id":1,"token":"[redacted]"}` {
		return fmt.Errorf("redact: %s, %w", out, err)
	}
	v, _, _, err := e.OnConflict("sets/"+key, Version{Value: []byte(`["b"]`)}, Version{Value: []byte(`["a"]`)})
	if err != nil || string(v) != `["a","b"]` {
		return fmt.Errorf("set_union: %s, %w", v, err)
	}
	return nil
}
