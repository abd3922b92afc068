package scripting

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	lua "github.com/yuin/gopher-lua"

	"github.com/cloudknowledge/ck/internal/limits"
)

// Defaults (the hook_* keys of config.hcl.example; a hook block's timeout).
const (
	DefaultTimeout      = 50 * time.Millisecond
	DefaultMemoryBudget = 16 << 20
	DefaultHeapLimit    = 512 << 20
	DefaultMaxValueSize = limits.DefaultMaxValueSize
)

// HookSpec is one `hook "pattern" { script = ..., timeout = ... }` block.
type HookSpec struct {
	Pattern string        // '*' matches any run of characters, '/' included; '?' one character
	Script  string        // path of the .lua file (the daemon resolves it against the config file)
	Timeout time.Duration // per call; 0 means DefaultTimeout
}

// Config configures an Engine. Zero values take the defaults.
type Config struct {
	Hooks        []HookSpec // the first whose pattern matches a key applies
	PoolSize     int        // Lua states, running or abandoned; 0: 2*GOMAXPROCS
	MemoryBudget int64      // per call, bytes of strings the capped built-ins may build; 0: 16 MiB
	HeapLimit    uint64     // the watchdog cancels running hooks above this Go heap size; 0: 512 MiB
	MaxValueSize int        // largest pattern subject or JSON document; 0: 4 MiB
	Logger       hclog.Logger
	NodeName     string // ck.node
	// Get serves ck.get: a local, read-only lookup. It is called on a hook's
	// goroutine while the caller of OnSet/OnGet waits, so it must not wait
	// for anything that caller holds.
	Get func(key string) (value []byte, found bool, err error)
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	for i, h := range c.Hooks {
		switch {
		case h.Pattern == "":
			return fmt.Errorf("hooks[%d]: empty pattern", i)
		case h.Script == "":
			return fmt.Errorf("hook %q: script is required", h.Pattern)
		case h.Timeout < 0:
			return fmt.Errorf("hook %q: negative timeout", h.Pattern)
		}
	}
	switch {
	case c.PoolSize < 0:
		return fmt.Errorf("hook_pool: must not be negative")
	case c.MemoryBudget < 0:
		return fmt.Errorf("hook_memory: must not be negative")
	case c.MaxValueSize < 0:
		return fmt.Errorf("max_value_size: must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.PoolSize == 0 {
		c.PoolSize = 2 * runtime.GOMAXPROCS(0)
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	if c.HeapLimit == 0 {
		c.HeapLimit = DefaultHeapLimit
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = DefaultMaxValueSize
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Hooks = append([]HookSpec(nil), c.Hooks...)
	for i := range c.Hooks {
		if c.Hooks[i].Timeout == 0 {
			c.Hooks[i].Timeout = DefaultTimeout
		}
	}
	return c
}

// Engine runs hook scripts on a pool of sandboxed Lua states. It is safe
// for concurrent use; every call runs on a state of its own.
type Engine struct {
	cfg       Config
	hooks     []*Hook
	hash      string
	log       hclog.Logger
	luaLog    hclog.Logger // ck.log
	pool      *pool
	wd        *watchdog
	stats     counters
	closeOnce sync.Once
}

// New compiles every script once (the compiled code is shared by all Lua
// states) and runs each chunk once to learn which hook functions it
// defines. A script that fails to load — a syntax error, or an error in
// its top-level code — is reported as a *CompileError naming its file
// and line.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg: cfg,
		log: cfg.Logger.Named("hooks"),
	}
	e.luaLog = e.log.Named("lua")
	for _, spec := range cfg.Hooks {
		h, err := compileHook(spec)
		if err != nil {
			return nil, err
		}
		e.hooks = append(e.hooks, h)
	}
	e.hash = hashHooks(e.hooks)
	e.pool = newPool(e, cfg.PoolSize)
	e.wd = newWatchdog(cfg.HeapLimit, e.log)
	for _, h := range e.hooks {
		if err := e.discover(h); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// Hash is a stable digest of the hook configuration — patterns, timeouts
// and script bytes — that nodes compare in HELLO.
func (e *Engine) Hash() string { return e.hash }

func hashHooks(hooks []*Hook) string {
	h := sha256.New()
	h.Write([]byte("ck-hooks-v1\x00"))
	var n [8]byte
	for _, k := range hooks {
		binary.BigEndian.PutUint64(n[:], uint64(len(k.Pattern)))
		h.Write(n[:])
		h.Write([]byte(k.Pattern))
		binary.BigEndian.PutUint64(n[:], uint64(k.Timeout))
		h.Write(n[:])
		h.Write(k.sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Match returns the hook whose pattern first matches key, or nil.
func (e *Engine) Match(key string) *Hook {
	for _, h := range e.hooks {
		if globMatch(h.Pattern, key) {
			return h
		}
	}
	return nil
}

// Hooks returns the configured hooks, in order.
func (e *Engine) Hooks() []*Hook { return append([]*Hook(nil), e.hooks...) }

// Close stops the watchdog and closes the idle Lua states; calls still
// running finish (or are abandoned) and their states are closed then.
// Calls after Close fail with ErrHook. Close is safe to call twice.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.pool.close()
		e.wd.close()
	})
}

func init() {
	// gopher-lua stores integer keys below MaxArrayIndex in a table's array
	// part and fills any gap with nils, so with its default (64 Mi) a
	// single instruction `t[5e7] = 1` allocates and fills ~800 MiB, which
	// neither the timeout nor the watchdog can interrupt. At 1 Mi the worst
	// single step is 16 MiB. The cost: integer keys from 2^20 up live in
	// the hash part, where `#` does not count them, so sequences longer
	// than 1,048,575 elements are not supported (ck.json.decode refuses
	// such arrays). Only this package links gopher-lua in ckd.
	lua.MaxArrayIndex = 1 << 20
}
