package scripting

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// string.find, match, gmatch and gsub on the bounded matcher of
// luapattern.go, with Lua 5.1's semantics (lstrlib.c's str_find_aux,
// gmatch_aux, str_gsub). Subjects longer than MaxValueSize are refused,
// and gsub's result is charged to the call's memory budget.

func (sb *sandbox) newMatch(src, pat string) *matchState {
	return &matchState{src: src, pat: pat, ctx: sb.call.ctx}
}

// withPatternErrors turns the matcher's panics into Lua errors; Lua errors
// raised inside (a gsub replacement function failing) pass through as is.
func withPatternErrors(L *lua.LState, fn string, body func() int) (n int) {
	defer func() {
		if r := recover(); r != nil {
			if pe, ok := r.(patternError); ok {
				L.RaiseError("%s: %s", fn, pe.msg)
			}
			panic(r)
		}
	}()
	return body()
}

func (sb *sandbox) checkSubject(L *lua.LState, fn string, s string) {
	if len(s) > sb.eng.cfg.MaxValueSize {
		L.RaiseError("%s: subject of %d bytes is larger than max_value_size (%d)", fn, len(s), sb.eng.cfg.MaxValueSize)
	}
}

// posrelat is lstrlib's posrelat: a negative position counts from the end.
func posrelat(pos, n int) int {
	if pos < 0 {
		pos += n + 1
	}
	if pos < 0 {
		return 0
	}
	return pos
}

func (ms *matchState) pushOneCapture(L *lua.LState, i, s, e int) {
	if i >= ms.level {
		if i != 0 {
			ms.fail("invalid capture index")
		}
		L.Push(lua.LString(ms.src[s:e])) // the whole match
		return
	}
	switch c := ms.capture[i]; c.len {
	case capUnfinished:
		ms.fail("unfinished capture")
	case capPosition:
		L.Push(lua.LNumber(c.init + 1))
	default:
		L.Push(lua.LString(ms.src[c.init : c.init+c.len]))
	}
}

// pushCaptures pushes the captures, or the whole match when there are
// none and whole is set.
func (ms *matchState) pushCaptures(L *lua.LState, s, e int, whole bool) int {
	n := ms.level
	if n == 0 && whole {
		n = 1
	}
	for i := 0; i < n; i++ {
		ms.pushOneCapture(L, i, s, e)
	}
	return n
}

func (sb *sandbox) strFind(L *lua.LState) int  { return sb.findAux(L, true) }
func (sb *sandbox) strMatch(L *lua.LState) int { return sb.findAux(L, false) }

func (sb *sandbox) findAux(L *lua.LState, find bool) int {
	fn := "string.match"
	if find {
		fn = "string.find"
	}
	s := L.CheckString(1)
	p := L.CheckString(2)
	sb.checkSubject(L, fn, s)
	init := posrelat(L.OptInt(3, 1), len(s)) - 1
	if init < 0 {
		init = 0
	} else if init > len(s) {
		init = len(s)
	}
	if find && (L.ToBool(4) || !strings.ContainsAny(p, patternSpecial)) {
		if i := strings.Index(s[init:], p); i >= 0 { // plain search
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(p)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	return withPatternErrors(L, fn, func() int {
		anchor := strings.HasPrefix(p, "^")
		if anchor {
			p = p[1:]
		}
		ms := sb.newMatch(s, p)
		for s1 := init; s1 <= len(s); s1++ {
			ms.level = 0
			if e := ms.match(s1, 0); e >= 0 {
				if find {
					L.Push(lua.LNumber(s1 + 1))
					L.Push(lua.LNumber(e))
					return ms.pushCaptures(L, 0, 0, false) + 2
				}
				return ms.pushCaptures(L, s1, e, true)
			}
			if anchor {
				break
			}
		}
		L.Push(lua.LNil)
		return 1
	})
}

func (sb *sandbox) strGmatch(L *lua.LState) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	sb.checkSubject(L, "string.gmatch", s)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		return withPatternErrors(L, "string.gmatch", func() int {
			ms := sb.newMatch(s, p)
			for src := pos; src <= len(s); src++ {
				ms.level = 0
				if e := ms.match(src, 0); e >= 0 {
					pos = e
					if e == src { // empty match: move on at least one byte
						pos++
					}
					return ms.pushCaptures(L, src, e, true)
				}
			}
			pos = len(s) + 1
			return 0
		})
	}))
	return 1
}

func (sb *sandbox) strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	p := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTFunction, lua.LTTable:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	sb.checkSubject(L, "string.gsub", src)
	return withPatternErrors(L, "string.gsub", func() int {
		anchor := strings.HasPrefix(p, "^")
		if anchor {
			p = p[1:]
		}
		ms := sb.newMatch(src, p)
		left := sb.budgetLeft()
		var b []byte
		n, s := 0, 0
	loop:
		for n < maxN {
			ms.level = 0
			e := ms.match(s, 0)
			if e >= 0 {
				n++
				b = sb.gsubValue(L, ms, b, s, e, repl)
			}
			switch {
			case e > s: // non-empty match: skip it
				s = e
			case s < len(src):
				b = append(b, src[s])
				s++
			default:
				break loop // end of subject
			}
			if int64(len(b)) > left {
				ms.fail("result exceeds the hook memory budget")
			}
			if anchor {
				break loop
			}
		}
		b = append(b, src[s:]...)
		sb.charge(L, "string.gsub", int64(len(b)))
		L.Push(lua.LString(b))
		L.Push(lua.LNumber(n))
		return 2
	})
}

// gsubValue appends the replacement for the match src[s:e] (add_value).
func (sb *sandbox) gsubValue(L *lua.LState, ms *matchState, b []byte, s, e int, repl lua.LValue) []byte {
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		return gsubString(ms, b, s, e, lua.LVAsString(r), L)
	case *lua.LFunction:
		L.Push(r)
		L.Call(ms.pushCaptures(L, s, e, true), 1)
		v = L.Get(-1)
		L.Pop(1)
	case *lua.LTable:
		ms.pushOneCapture(L, 0, s, e)
		key := L.Get(-1)
		L.Pop(1)
		v = L.GetTable(r, key)
	}
	switch v := v.(type) {
	case lua.LString, lua.LNumber:
		return append(b, lua.LVAsString(v)...)
	default:
		if !lua.LVAsBool(v) { // nil or false: keep the original text
			return append(b, ms.src[s:e]...)
		}
		ms.fail("invalid replacement value (a " + v.Type().String() + ")")
		return nil
	}
}

// gsubString expands a replacement string: %0 is the whole match, %1-%9
// the captures, %% a percent sign (add_s).
func gsubString(ms *matchState, b []byte, s, e int, news string, L *lua.LState) []byte {
	for {
		i := strings.IndexByte(news, '%')
		if i < 0 {
			return append(b, news...)
		}
		b = append(b, news[:i]...)
		if i+1 == len(news) {
			ms.fail("invalid use of '%' in replacement string")
		}
		switch c := news[i+1]; {
		case !isDigit(c):
			b = append(b, c)
		case c == '0':
			b = append(b, ms.src[s:e]...)
		default:
			ms.pushOneCapture(L, int(c-'1'), s, e)
			b = append(b, lua.LVAsString(L.Get(-1))...)
			L.Pop(1)
		}
		news = news[i+2:]
	}
}
