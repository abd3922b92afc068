package scripting

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// The capped built-ins. gopher-lua checks the hook's context between VM
// instructions but never inside a Go built-in, so any built-in whose work
// or result can be far larger than its inputs is replaced here: its result
// is checked against the call's memory budget (Config.MemoryBudget, shared
// by every capped built-in of one call) before anything is allocated, and
// loops that depend on a table's size poll the context.
//
// Not capped, and why that is safe: string.sub/upper/lower/reverse/len/byte/
// char produce at most their input (string.byte and unpack push values on
// the Lua stack, which RegistryMaxSize bounds); captures of find/match share
// the subject's memory. The `..` operator is a VM instruction: the timeout
// and the heap watchdog bound it (watchdog.go).

func (sb *sandbox) budgetLeft() int64 { return sb.call.budget }

// charge takes n bytes from the call's budget or raises a Lua error.
func (sb *sandbox) charge(L *lua.LState, fn string, n int64) {
	if n > sb.call.budget {
		L.RaiseError("%s: result of %d bytes exceeds the hook memory budget (%d bytes left)", fn, n, sb.call.budget)
	}
	sb.call.budget -= n
}

// strRep is string.rep(s, n), checked against the budget before it builds.
func (sb *sandbox) strRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := float64(L.CheckNumber(2))
	if n < 1 || len(s) == 0 || math.IsNaN(n) {
		L.Push(lua.LString(""))
		return 1
	}
	size := float64(len(s)) * math.Floor(n)
	if size > float64(sb.call.budget) {
		L.RaiseError("string.rep: result of %.0f bytes exceeds the hook memory budget (%d bytes left)", size, sb.call.budget)
	}
	sb.charge(L, "string.rep", int64(size))
	L.Push(lua.LString(strings.Repeat(s, int(n))))
	return 1
}

// strFormat validates the format the way Lua 5.1 does (flags, width and
// precision of at most two digits, Lua's conversions only — which also
// keeps Go's '*' width and '%[n]' indexes out), bounds the result from its
// inputs, and only then formats, with Go's fmt and gopher-lua's value
// formatting as gopher-lua's string.format does (whose own count of
// arguments is thrown off by "%%").
func (sb *sandbox) strFormat(L *lua.LState) int {
	f := L.CheckString(1)
	bound := int64(len(f))
	var args []any
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			continue
		}
		conv, next := scanFormat(L, f, i)
		i = next
		n := len(args) + 2
		if n > L.GetTop() {
			L.ArgError(n, "no value")
		}
		args = append(args, L.Get(n))
		bound += 2*99 + formatArgBound(conv, L.Get(n))
	}
	if bound > sb.call.budget {
		L.RaiseError("string.format: result of up to %d bytes exceeds the hook memory budget (%d bytes left)", bound, sb.call.budget)
	}
	out := fmt.Sprintf(f, args...)
	sb.charge(L, "string.format", int64(len(out)))
	L.Push(lua.LString(out))
	return 1
}

// scanFormat checks the specification starting at f[i] (after '%') and
// returns its conversion character and index.
func scanFormat(L *lua.LState, f string, i int) (byte, int) {
	start := i
	for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
		i++
	}
	if i-start > 5 {
		L.RaiseError("invalid format (repeated flags)")
	}
	digits := func() {
		for n := 0; n < 2 && i < len(f) && isDigit(f[i]); n++ {
			i++
		}
	}
	digits() // width
	if i < len(f) && f[i] == '.' {
		i++
		digits() // precision
	}
	if i < len(f) && isDigit(f[i]) {
		L.RaiseError("invalid format (width or precision too long)")
	}
	if i >= len(f) || strings.IndexByte("cdiouxXeEfgGqs", f[i]) < 0 {
		L.RaiseError("invalid option '%%%s' to 'format'", f[start:min(i+1, len(f))])
	}
	return f[i], i
}

func formatArgBound(conv byte, v lua.LValue) int64 {
	if s, ok := v.(lua.LString); ok && (conv == 's' || conv == 'q') {
		return 4*int64(len(s)) + 2 // %q may escape every byte
	}
	return 512 // a number: at most ~310 digits, sign and exponent
}

// tableConcat is table.concat(t, sep, i, j), sized before it builds.
func (sb *sandbox) tableConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	left := sb.call.budget
	var size int64
	for k := i; ; k++ {
		v := t.RawGetInt(k)
		if !lua.LVCanConvToString(v) {
			L.RaiseError("table.concat: invalid value (at index %d) in table for 'concat'", k)
		}
		size += int64(len(lua.LVAsString(v)))
		if k == j {
			break
		}
		size += int64(len(sep))
		if size > left {
			break
		}
	}
	sb.charge(L, "table.concat", size)
	var b strings.Builder
	b.Grow(int(size))
	for k := i; ; k++ {
		b.WriteString(lua.LVAsString(t.RawGetInt(k)))
		if k == j {
			break
		}
		b.WriteString(sep)
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// strLower and strUpper change ASCII letters only, byte by byte, as Lua
// 5.1 does in the C locale. gopher-lua's use strings.ToLower, which maps
// Unicode letters and turns bytes that are not UTF-8 into U+FFFD — a
// corruption of binary values.
func strLower(L *lua.LState) int { return mapASCII(L, 'A', 'Z') }
func strUpper(L *lua.LState) int { return mapASCII(L, 'a', 'z') }

// mapASCII flips the case of the letters in lo..hi.
func mapASCII(L *lua.LState, lo, hi byte) int {
	s := L.CheckString(1)
	i := 0
	for i < len(s) && (s[i] < lo || s[i] > hi) {
		i++
	}
	if i == len(s) {
		L.Push(lua.LString(s)) // nothing to change: no copy
		return 1
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; lo <= c && c <= hi {
			b[i] = c ^ 0x20
		}
	}
	L.Push(lua.LString(b))
	return 1
}

// guardFrozen wraps a table function whose first argument it may modify
// (table.insert, remove, sort; rawset), refusing the frozen library tables.
func guardFrozen(fn lua.LGFunction, name string) lua.LGFunction {
	return func(L *lua.LState) int {
		if t, ok := L.Get(1).(*lua.LTable); ok && isFrozen(t) {
			L.RaiseError("%s: attempt to modify a read-only table", name)
		}
		return fn(L)
	}
}

// mathRandom is math.random. Numbers come from the process-wide generator
// of math/rand/v2 unless math.randomseed was called in this call, which
// seeds a generator private to the call: seeding never leaks into other
// calls, other states or the rest of the daemon (gopher-lua's own
// randomseed would reseed the global math/rand).
func (sb *sandbox) mathRandom(L *lua.LState) int {
	r := rand.Float64
	if sb.call.rng != nil {
		r = sb.call.rng.Float64
	}
	x := r()
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(x))
	case 1, 2:
		lo, hi := 1.0, float64(L.CheckNumber(1))
		if L.GetTop() == 2 {
			lo, hi = hi, float64(L.CheckNumber(2))
		}
		lo, hi = math.Floor(lo), math.Floor(hi)
		if lo > hi {
			L.ArgError(L.GetTop(), "interval is empty")
		}
		L.Push(lua.LNumber(math.Floor(x*(hi-lo+1)) + lo))
	default:
		L.RaiseError("wrong number of arguments")
	}
	return 1
}

func (sb *sandbox) mathRandomseed(L *lua.LState) int {
	seed := uint64(int64(L.CheckNumber(1)))
	sb.call.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return 0
}
