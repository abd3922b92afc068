package scripting

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"
)

// script writes a Lua file into dir and returns its path.
func script(t testing.TB, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testTimeout is the hook timeout of tests that are not about timeouts:
// generous, because a shared machine under the race detector can stall a
// trivial call for tens of milliseconds.
const testTimeout = 10 * time.Second

// engine builds an Engine with one hook "*" running src, closed at cleanup.
func engine(t testing.TB, src string, mod ...func(*Config)) *Engine {
	t.Helper()
	cfg := Config{Hooks: []HookSpec{{Pattern: "*", Script: script(t, t.TempDir(), "hook.lua", src), Timeout: testTimeout}}}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func timeout(d time.Duration) func(*Config) {
	return func(c *Config) {
		for i := range c.Hooks {
			c.Hooks[i].Timeout = d
		}
	}
}

var bg = context.Background()

// checkFor polls f until it returns nil or wait passes.
func checkFor(t testing.TB, wait, every time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, wait, every, f)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
