package natsbridge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
)

func TestSubjectKey(t *testing.T) {
	for _, tc := range []struct{ key, subject string }{
		{"app/config", "app.config"},
		{"a", "a"},
		{"A-Z_09", "A-Z_09"},
		{"a.b/c d", "a~2Eb.c~20d"},
		{"*/>/~", "~2A.~3E.~7E"},
		{"café", "caf~C3~A9"},
		{"日本", "~E6~97~A5~E6~9C~AC"},
		{"x~41", "x~7E41"},
		{" lead", "~20lead"},
		{"", "~"},         // no valid key is empty: NATS still gets a token
		{"a//b", "a.~.b"}, // nor has an empty segment
		{"/a/", "~.a.~"},
	} {
		if got := natsbridge.SubjectKey(tc.key); got != tc.subject {
			t.Errorf("SubjectKey(%q) = %q, want %q", tc.key, got, tc.subject)
		}
		key, err := natsbridge.KeyFromSubject(tc.subject)
		if err != nil || key != tc.key {
			t.Errorf("KeyFromSubject(%q) = %q, %v; want %q", tc.subject, key, err, tc.key)
		}
	}
}

func TestKeyFromSubjectRefuses(t *testing.T) {
	for _, s := range []string{
		"",            // no token
		"a..b",        // empty token
		"a.",          // trailing empty token
		".a",          // leading empty token
		"a~2e",        // lowercase hex
		"a~41",        // 'A' must be written as itself
		"a~2",         // short escape
		"a~",          // bare ~ inside a token
		"~~",          // two bare ~
		"a*",          // wildcard byte
		">",           // wildcard token
		"a b",         // space
		"caf\xc3\xa9", // raw non-ASCII
		"a~ZZ",        // not hex
	} {
		if k, err := natsbridge.KeyFromSubject(s); !errors.Is(err, natsbridge.ErrBadSubject) {
			t.Errorf("KeyFromSubject(%q) = %q, %v; want ErrBadSubject", s, k, err)
		}
	}
}

// checkTokens fails unless s is a literal NATS subject: non-empty tokens of
// [A-Za-z0-9_~-] separated by '.'.
func checkTokens(t *testing.T, s string) {
	t.Helper()
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			t.Fatalf("subject %q has an empty token", s)
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '~') {
				t.Fatalf("subject %q holds byte %q", s, c)
			}
		}
	}
}

// FuzzSubjectKey: every string maps to a literal subject that maps back.
func FuzzSubjectKey(f *testing.F) {
	for _, k := range []string{"app/config", "a.b/c d", "*/>/~", "café", "", "a//b", "~7E", "\x00\xff"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		s := natsbridge.SubjectKey(key)
		checkTokens(t, s)
		back, err := natsbridge.KeyFromSubject(s)
		if err != nil {
			t.Fatalf("KeyFromSubject(SubjectKey(%q) = %q): %v", key, s, err)
		}
		if back != key {
			t.Fatalf("round trip of %q gave %q (via %q)", key, back, s)
		}
	})
}

// FuzzKeyFromSubject: whatever KeyFromSubject accepts is exactly what
// SubjectKey produces for the key (one key, one subject).
func FuzzKeyFromSubject(f *testing.F) {
	for _, s := range []string{"app.config", "a~2Eb.c~20d", "~", "~.~", "a~41", "a..b", "caf~C3~A9", "~7e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := natsbridge.KeyFromSubject(s)
		if err != nil {
			return
		}
		if got := natsbridge.SubjectKey(key); got != s {
			t.Fatalf("KeyFromSubject(%q) = %q, whose subject is %q", s, key, got)
		}
	})
}
