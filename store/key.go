package store

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen is the longest key in bytes.
const MaxKeyLen = 1024

// ValidateKey checks a key (docs/PROTOCOL.md, Data model): UTF-8, 1–1024 bytes, no NUL
// or control characters, no empty, "." or ".." segment between '/' (so no
// leading, trailing or doubled '/'). The error wraps ErrBadKey and says what
// is wrong and at which byte, e.g. "key: empty segment at byte 4".
func ValidateKey(key string) error {
	switch {
	case key == "":
		return &keyError{msg: "empty", at: -1}
	case len(key) > MaxKeyLen:
		return &keyError{msg: "longer than 1024 bytes (" + strconv.Itoa(len(key)) + ")", at: -1}
	}
	seg := 0 // start of the current segment
	for i := 0; i < len(key); {
		r, size := utf8.DecodeRuneInString(key[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return &keyError{msg: "invalid UTF-8", at: i}
		case r == 0:
			return &keyError{msg: "NUL byte", at: i}
		case unicode.IsControl(r): // C0, DEL and C1
			return &keyError{msg: "control character " + strconv.QuoteRune(r), at: i}
		case r == '/':
			if err := checkSegment(key[seg:i], seg); err != nil {
				return err
			}
			seg = i + 1
		}
		i += size
	}
	return checkSegment(key[seg:], seg)
}

func checkSegment(s string, at int) error {
	switch s {
	case "":
		return &keyError{msg: "empty segment", at: at}
	case ".", "..":
		return &keyError{msg: "segment \"" + s + "\"", at: at}
	}
	return nil
}
