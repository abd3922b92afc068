package scripting

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// Kind names a hook function a script may define.
type Kind string

const (
	KindSet      Kind = "on_set"
	KindGet      Kind = "on_get"
	KindConflict Kind = "on_conflict"
)

var kinds = []Kind{KindSet, KindGet, KindConflict}

// discoverTimeout bounds the top-level code of a script when New runs it.
const discoverTimeout = time.Second

// Hook is one configured hook block and its compiled script.
type Hook struct {
	Pattern string
	Script  string
	Timeout time.Duration

	proto *lua.FunctionProto // shared, read-only, by every Lua state
	sum   [sha256.Size]byte  // of the script's bytes
	has   map[Kind]bool
}

// Has reports whether the script defines the hook function kind
// ("on_set", "on_get" or "on_conflict").
func (h *Hook) Has(kind Kind) bool { return h != nil && h.has[kind] }

func compileHook(spec HookSpec) (*Hook, error) {
	src, err := os.ReadFile(spec.Script)
	if err != nil {
		return nil, &CompileError{File: spec.Script, Msg: err.Error()}
	}
	chunk, err := parse.Parse(bytes.NewReader(src), spec.Script)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			line := pe.Pos.Line
			if line < 0 { // at EOF
				line = bytes.Count(src, []byte("\n")) + 1
			}
			msg := strings.TrimSpace(pe.Message)
			if pe.Token != "" {
				msg += " near '" + pe.Token + "'"
			}
			return nil, &CompileError{File: spec.Script, Line: line, Msg: msg}
		}
		return nil, &CompileError{File: spec.Script, Msg: strings.TrimSpace(err.Error())}
	}
	proto, err := lua.Compile(chunk, spec.Script)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, &CompileError{File: spec.Script, Line: ce.Line, Msg: ce.Message}
		}
		return nil, &CompileError{File: spec.Script, Msg: err.Error()}
	}
	dropCompatArg(proto)
	return &Hook{
		Pattern: spec.Pattern,
		Script:  spec.Script,
		Timeout: spec.Timeout,
		proto:   proto,
		sum:     sha256.Sum256(src),
		has:     map[Kind]bool{},
	}, nil
}

// dropCompatArg turns off Lua 5.0's implicit `arg` table in the script's
// vararg functions — the main chunk is one. With it on, gopher-lua builds a
// table (and a hash map) on every run of the chunk, which was most of the
// cost of running it per call (BenchmarkEnvFreshChunk). Scripts use `...`
// instead, as Lua 5.1 intends; lua.CompatVarArg stays as it is.
func dropCompatArg(p *lua.FunctionProto) {
	p.IsVarArg &^= lua.VarArgNeedsArg
	for _, c := range p.FunctionPrototypes {
		dropCompatArg(c)
	}
}

// discover runs the script's top level, as every call will, and notes
// which hook functions it defines. A script defining on_conflict is also
// run in the conflict sandbox, so top-level code that needs ck.get or
// ck.node fails here rather than at the first conflict.
func (e *Engine) discover(h *Hook) error {
	for _, conflict := range []bool{false, true} {
		if conflict && !h.has[KindConflict] {
			break
		}
		resp := e.do(context.Background(), &request{hook: h, discover: true, conflict: conflict})
		if resp.err != nil {
			return loadError(h.Script, resp.err)
		}
		if !conflict {
			for _, k := range kinds {
				h.has[k] = resp.found[k]
			}
		}
	}
	if !h.has[KindSet] && !h.has[KindGet] && !h.has[KindConflict] {
		e.log.Warn("hook script defines none of on_set, on_get, on_conflict", "script", h.Script, "pattern", h.Pattern)
	}
	return nil
}

var luaPosition = regexp.MustCompile(`^(.*?):(\d+): `)

// loadError turns a failure of a script's top level into a CompileError.
func loadError(script string, err error) error {
	var le *luaError
	if !errors.As(err, &le) {
		return &CompileError{File: script, Msg: err.Error()}
	}
	msg := le.msg
	if m := luaPosition.FindStringSubmatch(msg); m != nil && m[1] == script {
		line, _ := strconv.Atoi(m[2])
		return &CompileError{File: script, Line: line, Msg: msg[len(m[0]):]}
	}
	return &CompileError{File: script, Msg: msg}
}
