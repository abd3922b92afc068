package scripting

import (
	"context"
	"errors"
)

// This file is a port of Lua 5.1's pattern matcher (lstrlib.c: match,
// max_expand, min_expand, captures, %b, %f, back-references), replacing
// gopher-lua's pm package for string.find, match, gmatch and gsub.
//
// Why not gopher-lua's own: its matcher recurses once per character on
// every repetition (so `.*` over a 4 MiB value is a Go recursion four
// million deep), backtracking patterns are polynomial in the subject, and
// it runs inside a Go builtin where gopher-lua's per-instruction context
// check never looks — a hostile pattern would spin past the hook's timeout
// and keep its goroutine forever.
//
// This matcher is bounded two ways:
//   - recursion depth: at most maxMatchDepth nested match calls (Lua 5.2's
//     MAXCCALLS rule) — recursion happens per pattern item, never per
//     subject byte, so real patterns stay far below it;
//   - time: every matcher step (one subject byte examined or one
//     backtracking attempt) is counted, and every stepCheckEvery steps the
//     call's context is polled, so the hook's deadline and the heap
//     watchdog stop a catastrophic pattern within microseconds.

const (
	maxCaptures    = 32  // LUA_MAXCAPTURES
	maxMatchDepth  = 200 // MAXCCALLS in Lua 5.2's lstrlib
	stepCheckEvery = 1 << 12
	patternSpecial = "^$*+?.([%-"
	capUnfinished  = -1
	capPosition    = -2
)

// patternError is raised (panicked) by the matcher and turned into a Lua
// error by the string functions.
type patternError struct{ msg string }

func (e patternError) Error() string { return e.msg }

// errPatternStopped is raised when the context ends mid-match.
var errPatternStopped = errors.New("pattern matching stopped")

type capture struct {
	init, len int
}

type matchState struct {
	src     string
	pat     string
	level   int
	depth   int
	steps   int
	ctx     context.Context
	capture [maxCaptures]capture
}

func (ms *matchState) fail(msg string) { panic(patternError{msg}) }

// step counts work and polls the context now and then.
func (ms *matchState) step() {
	ms.steps++
	if ms.steps%stepCheckEvery == 0 && ms.ctx != nil {
		select {
		case <-ms.ctx.Done():
			panic(patternError{errPatternStopped.Error() + ": " + context.Cause(ms.ctx).Error()})
		default:
		}
	}
}

func (ms *matchState) checkCapture(l int) int {
	l -= '1'
	if l < 0 || l >= ms.level || ms.capture[l].len == capUnfinished {
		ms.fail("invalid capture index")
	}
	return l
}

func (ms *matchState) captureToClose() int {
	for level := ms.level - 1; level >= 0; level-- {
		if ms.capture[level].len == capUnfinished {
			return level
		}
	}
	ms.fail("invalid pattern capture")
	return 0
}

// classEnd returns the index just past the single-character class at p.
func (ms *matchState) classEnd(p int) int {
	pat := ms.pat
	c := pat[p]
	p++
	switch c {
	case '%':
		if p >= len(pat) {
			ms.fail("malformed pattern (ends with '%')")
		}
		return p + 1
	case '[':
		if p < len(pat) && pat[p] == '^' {
			p++
		}
		for { // look for a ']'
			if p >= len(pat) {
				ms.fail("malformed pattern (missing ']')")
			}
			c := pat[p]
			p++
			if c == '%' && p < len(pat) {
				p++ // skip escapes such as '%]'
			}
			if p < len(pat) && pat[p] == ']' {
				return p + 1
			}
			if p >= len(pat) {
				ms.fail("malformed pattern (missing ']')")
			}
		}
	default:
		return p
	}
}

func isAlpha(c byte) bool  { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isSpace(c byte) bool  { return c == ' ' || ('\t' <= c && c <= '\r') }
func isCntrl(c byte) bool  { return c < 0x20 || c == 0x7f }
func isPunct(c byte) bool  { return c > 0x20 && c < 0x7f && !isAlpha(c) && !isDigit(c) }
func isXDigit(c byte) bool { return isDigit(c) || ('a' <= c|0x20 && c|0x20 <= 'f') }

// matchClass is lstrlib's match_class, in the C locale.
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = isCntrl(c)
	case 'd':
		res = isDigit(c)
	case 'l':
		res = isLower(c)
	case 'p':
		res = isPunct(c)
	case 's':
		res = isSpace(c)
	case 'u':
		res = isUpper(c)
	case 'w':
		res = isAlpha(c) || isDigit(c)
	case 'x':
		res = isXDigit(c)
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if isLower(cl) {
		return res
	}
	return !res
}

// matchBracketClass matches c against the set pat[p:ec+1], where pat[p]
// is '[' and pat[ec] is ']'.
func (ms *matchState) matchBracketClass(c byte, p, ec int) bool {
	pat := ms.pat
	sig := true
	if pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		switch {
		case pat[p] == '%':
			p++
			if matchClass(c, pat[p]) {
				return sig
			}
		case pat[p+1] == '-' && p+2 < ec:
			p += 2
			if pat[p-2] <= c && c <= pat[p] {
				return sig
			}
		case pat[p] == c:
			return sig
		}
	}
	return !sig
}

func (ms *matchState) singleMatch(s, p, ep int) bool {
	if s >= len(ms.src) {
		return false
	}
	c := ms.src[s]
	switch ms.pat[p] {
	case '.':
		return true
	case '%':
		return matchClass(c, ms.pat[p+1])
	case '[':
		return ms.matchBracketClass(c, p, ep-1)
	default:
		return ms.pat[p] == c
	}
}

func (ms *matchState) matchBalance(s, p int) int {
	if p+1 >= len(ms.pat) {
		ms.fail("unbalanced pattern")
	}
	if s >= len(ms.src) || ms.src[s] != ms.pat[p] {
		return -1
	}
	b, e := ms.pat[p], ms.pat[p+1]
	cont := 1
	for s++; s < len(ms.src); s++ {
		ms.step()
		switch ms.src[s] {
		case e:
			if cont--; cont == 0 {
				return s + 1
			}
		case b:
			cont++
		}
	}
	return -1
}

func (ms *matchState) maxExpand(s, p, ep int) int {
	i := 0
	for ms.singleMatch(s+i, p, ep) {
		ms.step()
		i++
	}
	for ; i >= 0; i-- { // try the longest repetition first
		if res := ms.match(s+i, ep+1); res >= 0 {
			return res
		}
	}
	return -1
}

func (ms *matchState) minExpand(s, p, ep int) int {
	for {
		if res := ms.match(s, ep+1); res >= 0 {
			return res
		}
		if !ms.singleMatch(s, p, ep) {
			return -1
		}
		s++ // one more repetition
	}
}

func (ms *matchState) startCapture(s, p, what int) int {
	if ms.level >= maxCaptures {
		ms.fail("too many captures")
	}
	ms.capture[ms.level] = capture{init: s, len: what}
	ms.level++
	res := ms.match(s, p)
	if res < 0 {
		ms.level-- // undo capture
	}
	return res
}

func (ms *matchState) endCapture(s, p int) int {
	l := ms.captureToClose()
	ms.capture[l].len = s - ms.capture[l].init
	res := ms.match(s, p)
	if res < 0 {
		ms.capture[l].len = capUnfinished
	}
	return res
}

func (ms *matchState) matchCapture(s int, l byte) int {
	i := ms.checkCapture(int(l))
	c := ms.capture[i]
	if c.len < 0 { // a position capture never matches text
		return -1
	}
	if len(ms.src)-s >= c.len && ms.src[c.init:c.init+c.len] == ms.src[s:s+c.len] {
		return s + c.len
	}
	return -1
}

// match returns the end of the match of pat[p:] at src[s:], or -1.
func (ms *matchState) match(s, p int) int {
	ms.depth++
	if ms.depth > maxMatchDepth {
		ms.fail("pattern too complex")
	}
	r := ms.doMatch(s, p)
	ms.depth-- // not deferred: after a panic the matchState is dropped
	return r
}

func (ms *matchState) doMatch(s, p int) int {
	pat := ms.pat
	for {
		ms.step()
		if p >= len(pat) {
			return s // end of pattern: success
		}
		switch pat[p] {
		case '(':
			if p+1 < len(pat) && pat[p+1] == ')' {
				return ms.startCapture(s, p+2, capPosition)
			}
			return ms.startCapture(s, p+1, capUnfinished)
		case ')':
			return ms.endCapture(s, p+1)
		case '$':
			if p+1 == len(pat) {
				if s == len(ms.src) {
					return s
				}
				return -1
			}
		case '%':
			if p+1 < len(pat) {
				switch c := pat[p+1]; {
				case c == 'b':
					if s = ms.matchBalance(s, p+2); s < 0 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					p += 2
					if p >= len(pat) || pat[p] != '[' {
						ms.fail("missing '[' after '%f' in pattern")
					}
					ep := ms.classEnd(p)
					var prev, cur byte
					if s > 0 {
						prev = ms.src[s-1]
					}
					if s < len(ms.src) {
						cur = ms.src[s]
					}
					if ms.matchBracketClass(prev, p, ep-1) || !ms.matchBracketClass(cur, p, ep-1) {
						return -1
					}
					p = ep
					continue
				case isDigit(c):
					if s = ms.matchCapture(s, c); s < 0 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		// A single-character class, perhaps followed by a repetition.
		ep := ms.classEnd(p)
		m := ms.singleMatch(s, p, ep)
		var op byte
		if ep < len(pat) {
			op = pat[ep]
		}
		switch op {
		case '?':
			if m {
				if res := ms.match(s+1, ep+1); res >= 0 {
					return res
				}
			}
			p = ep + 1
		case '*':
			return ms.maxExpand(s, p, ep)
		case '+':
			if !m {
				return -1
			}
			return ms.maxExpand(s+1, p, ep)
		case '-':
			return ms.minExpand(s, p, ep)
		default:
			if !m {
				return -1
			}
			s++
			p = ep
		}
	}
}
