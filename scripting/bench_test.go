package scripting

import (
	"testing"
)

// A typical configuration document, ~400 bytes.
var benchDoc = []byte(`{"service":"billing","replicas":3,"zones":["eu-west-1a","eu-west-1b","eu-west-1c"],
"limits":{"cpu":"500m","memory":"256Mi","requests_per_second":1200},"features":{"invoices_v2":true,
"dunning":false,"tax_engine":"internal"},"owners":[{"name":"Ada","email":"ada@example.com"},
{"name":"Grace","email":"grace@example.com"}],"version":"2024.11.3","notes":null}`)

// BenchmarkOnSetJSONValidate: examples/hooks/json_validate.lua on a
// ~400-byte document, from parallel callers.
func BenchmarkOnSetJSONValidate(b *testing.B) {
	e, err := New(Config{Hooks: []HookSpec{{Pattern: "config/*", Script: examplesDir + "/json_validate.lua"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.SetBytes(int64(len(benchDoc)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.OnSet(bg, "config/billing", benchDoc, Meta{Op: "set"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHookCallOverhead: a trivial on_set — the cost of a hook call
// itself (pool, goroutine hand-off, timeout context, fresh environment).
func BenchmarkHookCallOverhead(b *testing.B) {
	e := engine(b, `function on_set(key, value, meta) return nil end`)
	value := []byte("v")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.OnSet(bg, "k", value, Meta{Op: "set"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoHook: a key no hook matches.
func BenchmarkNoHook(b *testing.B) {
	e := engine(b, `function on_set(key, value, meta) return nil end`, func(c *Config) { c.Hooks[0].Pattern = "config/*" })
	value := []byte("v")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.OnSet(bg, "users/1", value, Meta{Op: "set"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewState: building one sandboxed Lua state — the price of
// replacing an abandoned one.
func BenchmarkNewState(b *testing.B) {
	e := engine(b, `function on_set() end`)
	b.ReportAllocs()
	for b.Loop() {
		newSandbox(e).L.Close()
	}
}
