// Package jsonstr appends Go strings as JSON string literals without
// reflection or allocation beyond the destination slice: the hot paths
// that write JSON by hand (the API's records, Lua's ck.json.encode) share
// it, so they quote alike.
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// Append appends s to b as a quoted JSON string. Control characters and
// U+2028/U+2029 are escaped, invalid UTF-8 becomes U+FFFD, and with html
// '<', '>' and '&' are escaped too: the output of encoding/json, byte for
// byte, in both cases (its default, and SetEscapeHTML(false)).
func Append(b []byte, s string, html bool) []byte {
	safe := &safeText
	if html {
		safe = &safeHTML
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i < len(s) && safe[s[i]] { // the run written as it is: one load per byte
			i++
		}
		if i == len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			b = appendByte(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// safeText and safeHTML tell the bytes Append writes as they are, without
// html and with it: ASCII but control characters, '"' and '\\' (and with
// html '<', '>' and '&'). Bytes from 0x80 are not: they start runes that
// are checked.
var safeText, safeHTML = func() (t, h [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
		h[c] = t[c] && c != '<' && c != '>' && c != '&'
	}
	return t, h
}()

// appendByte appends the escape of an ASCII byte that needs one.
func appendByte(b []byte, c byte) []byte {
	switch c {
	case '\\', '"':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}
