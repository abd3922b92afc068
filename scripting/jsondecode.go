package scripting

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// The JSON decoder (RFC 8259), building Lua values directly: decoding into
// Go values first and converting would allocate everything twice. See
// json.go for the mapping.

type jsonDecoder struct {
	sb    *sandbox
	L     *lua.LState
	s     string
	i     int
	depth int
	steps int
}

// jsonDecode is ck.json.decode(text): the value, or nil and a message.
func (sb *sandbox) jsonDecode(L *lua.LState) int {
	s := L.CheckString(1)
	if len(s) > sb.eng.cfg.MaxValueSize {
		L.Push(lua.LNil)
		L.Push(lua.LString("document larger than max_value_size"))
		return 2
	}
	d := jsonDecoder{sb: sb, L: L, s: s}
	v, msg := d.decode()
	if msg != "" {
		L.Push(lua.LNil)
		L.Push(lua.LString(msg))
		return 2
	}
	L.Push(v)
	return 1
}

func (d *jsonDecoder) decode() (v lua.LValue, msg string) {
	defer func() {
		if r := recover(); r != nil {
			je, ok := r.(jsonError)
			if !ok {
				panic(r)
			}
			v, msg = nil, je.msg
		}
	}()
	d.space()
	v = d.value()
	d.space()
	if d.i < len(d.s) {
		d.fail("unexpected data after the top-level value")
	}
	return v, ""
}

func (d *jsonDecoder) fail(msg string) {
	if d.i >= len(d.s) {
		panic(jsonError{"unexpected end of JSON (" + msg + ")"})
	}
	panic(jsonError{msg + " at offset " + strconv.Itoa(d.i)})
}

func (d *jsonDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() lua.LValue {
	if d.steps++; d.steps%stepCheckEvery == 0 {
		d.sb.checkCtx(func(msg string) { panic(jsonError{msg}) })
	}
	if d.i >= len(d.s) {
		d.fail("expected a value")
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return lua.LString(d.str())
	case c == '-' || isDigit(c):
		return d.number()
	case strings.HasPrefix(d.s[d.i:], "true"):
		d.i += 4
		return lua.LTrue
	case strings.HasPrefix(d.s[d.i:], "false"):
		d.i += 5
		return lua.LFalse
	case strings.HasPrefix(d.s[d.i:], "null"):
		d.i += 4
		return d.sb.jsonNull
	}
	d.fail("invalid character " + strconv.QuoteRune(rune(d.s[d.i])))
	return nil
}

func (d *jsonDecoder) enter() {
	if d.depth++; d.depth > maxJSONDepth {
		d.fail("nesting too deep")
	}
	d.i++ // the opening bracket
	d.space()
}

func (d *jsonDecoder) object() lua.LValue {
	d.enter()
	t := d.L.CreateTable(0, 4)
	t.Metatable = d.sb.jsonObjectMT
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		d.depth--
		return t
	}
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			d.fail("expected a string key")
		}
		k := d.str()
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			d.fail("expected ':'")
		}
		d.i++
		d.space()
		t.RawSetString(k, d.value())
		d.space()
		if d.i < len(d.s) && d.s[d.i] == ',' {
			d.i++
			d.space()
			continue
		}
		if d.i < len(d.s) && d.s[d.i] == '}' {
			d.i++
			d.depth--
			return t
		}
		d.fail("expected ',' or '}'")
	}
}

func (d *jsonDecoder) array() lua.LValue {
	d.enter()
	t := d.L.CreateTable(0, 0)
	t.Metatable = d.sb.jsonArrayMT
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		d.depth--
		return t
	}
	for n := 1; ; n++ {
		if n >= lua.MaxArrayIndex {
			d.fail("array too long")
		}
		t.RawSetInt(n, d.value())
		d.space()
		if d.i < len(d.s) && d.s[d.i] == ',' {
			d.i++
			d.space()
			continue
		}
		if d.i < len(d.s) && d.s[d.i] == ']' {
			d.i++
			d.depth--
			return t
		}
		d.fail("expected ',' or ']'")
	}
}

func (d *jsonDecoder) number() lua.LValue {
	start := d.i
	s := d.s
	if s[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(s) && isDigit(s[d.i]) {
			d.i++
			n++
		}
		return n
	}
	switch {
	case d.i < len(s) && s[d.i] == '0':
		d.i++
	case digits() == 0:
		d.fail("invalid number")
	}
	if d.i < len(s) && s[d.i] == '.' {
		d.i++
		if digits() == 0 {
			d.fail("invalid number")
		}
	}
	if d.i < len(s) && (s[d.i] == 'e' || s[d.i] == 'E') {
		d.i++
		if d.i < len(s) && (s[d.i] == '+' || s[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			d.fail("invalid number")
		}
	}
	f, err := strconv.ParseFloat(s[start:d.i], 64)
	if err != nil {
		d.i = start
		d.fail("number out of range")
	}
	return lua.LNumber(f)
}

// str reads a string; the fast path returns a substring of the input.
func (d *jsonDecoder) str() string {
	d.i++ // the opening quote
	start := d.i
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			v := d.s[start:d.i]
			d.i++
			if !utf8.ValidString(v) {
				v = fixUTF8(v)
			}
			return v
		case c == '\\':
			return d.escapedStr(start)
		case c < 0x20:
			d.fail("control character in string")
		}
		d.i++
	}
	d.fail("unterminated string")
	return ""
}

func (d *jsonDecoder) escapedStr(start int) string {
	b := []byte(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(b) {
				return fixUTF8(string(b))
			}
			return string(b)
		case c < 0x20:
			d.fail("control character in string")
		case c != '\\':
			b = append(b, c)
			d.i++
			continue
		}
		d.i++ // the backslash
		if d.i >= len(d.s) {
			break
		}
		e := d.s[d.i]
		d.i++
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			b = utf8.AppendRune(b, d.unicodeEscape())
		default:
			d.i -= 2
			d.fail("invalid escape")
		}
	}
	d.fail("unterminated string")
	return ""
}

// unicodeEscape reads the XXXX of \uXXXX (and a following low surrogate).
func (d *jsonDecoder) unicodeEscape() rune {
	r := d.hex4()
	if utf16.IsSurrogate(r) {
		if strings.HasPrefix(d.s[d.i:], `\u`) {
			save := d.i
			d.i += 2
			if r2 := utf16.DecodeRune(r, d.hex4()); r2 != utf8.RuneError {
				return r2
			}
			d.i = save
		}
		return utf8.RuneError // a lone surrogate
	}
	return r
}

func (d *jsonDecoder) hex4() rune {
	if d.i+4 > len(d.s) {
		d.fail("invalid \\u escape")
	}
	n, err := strconv.ParseUint(d.s[d.i:d.i+4], 16, 32)
	if err != nil {
		d.fail("invalid \\u escape")
	}
	d.i += 4
	return rune(n)
}

// fixUTF8 replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as encoding/json does.
func fixUTF8(s string) string {
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
