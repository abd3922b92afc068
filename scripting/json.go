package scripting

import (
	"math"
	"sort"
	"strconv"

	lua "github.com/yuin/gopher-lua"

	"github.com/cloudknowledge/ck/internal/jsonstr"
)

// ck.json: encode and decode between JSON text and Lua values.
//
// Decoding: objects become tables, arrays sequence tables (1..n), strings,
// numbers and booleans the Lua values, and null the ck.json.null sentinel
// — never nil, so arrays keep their length and a decoded document encodes
// back to the same JSON. (The sentinel is a userdata and is truthy: test
// `v == ck.json.null`.) Decoded arrays and objects carry a marker
// metatable, so an empty one encodes back as [] or {}. Invalid UTF-8 in
// strings becomes U+FFFD, as in Go's encoding/json. decode returns
// nil, message on invalid JSON rather than raising, so a hook can say why.
//
// Encoding: nil and ck.json.null are null; a table marked by decode or
// by ck.json.array / ck.json.object is encoded as marked; an unmarked
// table whose keys are exactly 1..n (n >= 1) is an array, one whose keys
// are all strings an object with its keys sorted (so the output is
// deterministic), an empty one {}. Anything else — mixed keys, functions,
// userdata, NaN or infinities, cycles, nesting deeper than maxJSONDepth —
// raises an error. The output is charged to the call's memory budget.

const maxJSONDepth = 1000

type jsonError struct{ msg string }

type jsonEncoder struct {
	sb    *sandbox
	buf   []byte
	limit int64
	stack []*lua.LTable // tables being encoded, to find cycles
	steps int
}

func (sb *sandbox) jsonEncode(L *lua.LState) int {
	e := jsonEncoder{sb: sb, limit: sb.budgetLeft()}
	msg := func() (msg string) {
		defer func() {
			if r := recover(); r != nil {
				je, ok := r.(jsonError)
				if !ok {
					panic(r)
				}
				msg = je.msg
			}
		}()
		e.value(L.Get(1))
		return ""
	}()
	if msg != "" {
		L.RaiseError("ck.json.encode: %s", msg)
	}
	sb.charge(L, "ck.json.encode", int64(len(e.buf)))
	L.Push(lua.LString(e.buf))
	return 1
}

func (e *jsonEncoder) fail(msg string) { panic(jsonError{msg}) }

func (e *jsonEncoder) value(v lua.LValue) {
	if int64(len(e.buf)) > e.limit {
		e.fail("result exceeds the hook memory budget")
	}
	if e.steps++; e.steps%stepCheckEvery == 0 {
		e.sb.checkCtx(func(msg string) { e.fail(msg) })
	}
	switch v := v.(type) {
	case *lua.LNilType:
		e.buf = append(e.buf, "null"...)
	case lua.LBool:
		e.buf = strconv.AppendBool(e.buf, bool(v))
	case lua.LNumber:
		e.number(float64(v))
	case lua.LString:
		if int64(len(e.buf)+len(v)) > e.limit {
			e.fail("result exceeds the hook memory budget")
		}
		e.buf = jsonstr.Append(e.buf, string(v), false)
	case *lua.LTable:
		e.table(v)
	case *lua.LUserData:
		if v == e.sb.jsonNull {
			e.buf = append(e.buf, "null"...)
			return
		}
		e.fail("cannot encode a userdata")
	default:
		e.fail("cannot encode a " + v.Type().String())
	}
}

func (e *jsonEncoder) number(f float64) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		e.fail("cannot encode NaN or infinity")
	case f == math.Trunc(f) && math.Abs(f) < 1e15:
		e.buf = strconv.AppendInt(e.buf, int64(f), 10)
	default:
		e.buf = strconv.AppendFloat(e.buf, f, 'g', -1, 64)
	}
}

func (e *jsonEncoder) table(t *lua.LTable) {
	for _, u := range e.stack {
		if u == t {
			e.fail("cannot encode a cyclic table")
		}
	}
	if len(e.stack) >= maxJSONDepth {
		e.fail("nesting too deep")
	}
	e.stack = append(e.stack, t)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()

	switch t.Metatable {
	case e.sb.jsonArrayMT:
		n := t.Len()
		for t.RawGetInt(n+1) != lua.LNil {
			n++
		}
		e.array(t, n)
		return
	case e.sb.jsonObjectMT:
		e.object(t, nil)
		return
	}
	n, ints, strs := 0, 0, 0
	t.ForEach(func(k, _ lua.LValue) {
		n++
		switch k := k.(type) {
		case lua.LString:
			strs++
		case lua.LNumber:
			if k == lua.LNumber(math.Trunc(float64(k))) && k >= 1 {
				ints++
			}
		}
	})
	switch {
	case n == 0:
		e.buf = append(e.buf, "{}"...)
	case ints == n && isSequence(t, n):
		e.array(t, n)
	case strs == n:
		e.object(t, nil)
	default:
		e.fail("cannot encode a table with mixed or non-string keys")
	}
}

// isSequence reports whether t, with n positive integer keys, has exactly
// the keys 1..n.
func isSequence(t *lua.LTable, n int) bool {
	for i := 1; i <= n; i++ {
		if t.RawGetInt(i) == lua.LNil {
			return false
		}
	}
	return true
}

func (e *jsonEncoder) array(t *lua.LTable, n int) {
	e.buf = append(e.buf, '[')
	for i := 1; i <= n; i++ {
		if i > 1 {
			e.buf = append(e.buf, ',')
		}
		e.value(t.RawGetInt(i))
	}
	e.buf = append(e.buf, ']')
}

func (e *jsonEncoder) object(t *lua.LTable, keys []string) {
	t.ForEach(func(k, _ lua.LValue) {
		s, ok := k.(lua.LString)
		if !ok {
			e.fail("object keys must be strings, not " + k.Type().String())
		}
		keys = append(keys, string(s))
	})
	if int64(len(keys)) > e.limit-int64(len(e.buf)) {
		e.fail("result exceeds the hook memory budget")
	}
	sort.Strings(keys)
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = jsonstr.Append(e.buf, k, false)
		e.buf = append(e.buf, ':')
		e.value(t.RawGetString(k))
	}
	e.buf = append(e.buf, '}')
}

// jsonMark returns a Lua function that sets a marker metatable on its
// argument (or a new table) and returns it: ck.json.array / ck.json.object.
func jsonMark(mt *lua.LTable) lua.LGFunction {
	return func(L *lua.LState) int {
		t, ok := L.Get(1).(*lua.LTable)
		if !ok {
			if L.GetTop() > 0 && L.Get(1) != lua.LNil {
				L.ArgError(1, "table expected")
			}
			t = L.NewTable()
		}
		if t.Metatable != lua.LNil && t.Metatable != mt {
			L.ArgError(1, "table already has a metatable")
		}
		t.Metatable = mt
		L.Push(t)
		return 1
	}
}
