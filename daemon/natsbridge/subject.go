package natsbridge

import (
	"fmt"
	"strings"
)

// The subject mapping (docs/PROTOCOL.md, NATS bridge). A key becomes the subject tokens after
// "<prefix>.kv." (and after ".set." / ".del." for inbound writes):
//
//   - each '/'-separated segment of the key becomes one token;
//   - in a token, the bytes A–Z, a–z, 0–9, '_' and '-' stand for
//     themselves, and every other byte — '~' itself included, and each byte
//     of a multi-byte UTF-8 character — is written "~HH", two uppercase hex
//     digits;
//   - an empty segment, which a valid key never has (store.ValidateKey),
//     is written "~" alone, so that no token is ever empty (NATS forbids
//     empty tokens) and the mapping is total over all strings.
//
// Examples:
//
//	app/config   → app.config
//	a.b/c d      → a~2Eb.c~20d
//	*/>/~        → ~2A.~3E.~7E
//	café         → caf~C3~A9
//
// The inverse (KeyFromSubject) splits at '.', turns "~" into an empty
// segment and "~HH" back into the byte, and joins the segments with '/'.
// It accepts only what SubjectKey produces — uppercase hex, no escape of a
// byte that stands for itself — so each key has exactly one subject and
// NATS permissions granted on subjects mean what they say
// (`ck.set.app.>` cannot be bypassed by writing `ck.set.~61pp.>`).
//
// Tokens never contain '.', '*', '>' or white space, so a subject key is a
// literal subject: wildcards in a key cannot widen a subscription.

const upperHex = "0123456789ABCDEF"

// plain reports whether b stands for itself in a token.
func plain(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

// SubjectKey returns the subject tokens for key (see the mapping above).
func SubjectKey(key string) string {
	var sb strings.Builder
	sb.Grow(len(key) + len(key)/4)
	seg := 0 // bytes in the current segment
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '/':
			if seg == 0 {
				sb.WriteByte('~')
			}
			sb.WriteByte('.')
			seg = 0
			continue
		case plain(c):
			sb.WriteByte(c)
		default:
			sb.WriteByte('~')
			sb.WriteByte(upperHex[c>>4])
			sb.WriteByte(upperHex[c&0xF])
		}
		seg++
	}
	if seg == 0 {
		sb.WriteByte('~')
	}
	return sb.String()
}

// KeyFromSubject is the inverse of SubjectKey: s is the part of a subject
// after "<prefix>.kv." (or ".set.", ".del."). It fails, wrapping
// ErrBadSubject, on anything SubjectKey would not produce.
func KeyFromSubject(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: no key tokens", ErrBadSubject)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	start := 0 // of the current token
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			continue
		}
		if err := decodeToken(&sb, s[start:i]); err != nil {
			return "", fmt.Errorf("%w: token %d of %q: %v", ErrBadSubject, strings.Count(s[:start], ".")+1, s, err)
		}
		if i < len(s) {
			sb.WriteByte('/')
		}
		start = i + 1
	}
	return sb.String(), nil
}

// decodeToken appends the segment that tok stands for.
func decodeToken(sb *strings.Builder, tok string) error {
	switch tok {
	case "":
		return fmt.Errorf("empty token")
	case "~":
		return nil // an empty segment
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if plain(c) {
			sb.WriteByte(c)
			continue
		}
		if c != '~' {
			return fmt.Errorf("byte %q must be written ~%02X", c, c)
		}
		if i+2 >= len(tok) {
			return fmt.Errorf("'~' at byte %d is not followed by two hex digits", i)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return fmt.Errorf("'~' at byte %d is not followed by two uppercase hex digits", i)
		}
		b := byte(hi<<4 | lo)
		if plain(b) {
			return fmt.Errorf("~%s at byte %d escapes %q, which must be written as itself", tok[i+1:i+3], i, b)
		}
		sb.WriteByte(b)
		i += 2
	}
	return nil
}

// unhex decodes an uppercase hex digit, or returns -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// CheckPrefix checks a subject prefix: one or more non-empty tokens
// separated by '.', without wildcards or white space.
func CheckPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(p) > 256 {
		return fmt.Errorf("longer than 256 bytes")
	}
	for i, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token", p)
		}
		if strings.ContainsAny(tok, "*> \t\r\n\f\v") {
			return fmt.Errorf("token %d of %q holds a wildcard or white space", i+1, p)
		}
	}
	return nil
}
