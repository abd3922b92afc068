package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name, key string
		want      string // "" = valid, else a substring of the error
	}{
		{"simple", "a", ""},
		{"path", "app/config/db", ""},
		{"dots inside", "a/.b/c../...", ""},
		{"spaces and unicode", "héllo wörld/ключ/鍵", ""},
		{"max length", strings.Repeat("k", 1024), ""},
		{"4-byte utf8", "emoji/😀", ""},
		{"empty", "", "key: empty"},
		{"too long", strings.Repeat("k", 1025), "longer than 1024 bytes (1025)"},
		{"NUL", "a\x00b", "NUL byte at byte 1"},
		{"newline", "a\nb", `control character '\n' at byte 1`},
		{"tab", "\tb", "control character '\\t' at byte 0"},
		{"DEL", "ab\x7f", `control character '\x7f' at byte 2`},
		{"C1 control", "a\u0085", "control character '\\u0085' at byte 1"},
		{"invalid utf8", "a\xffb", "invalid UTF-8 at byte 1"},
		{"truncated utf8", "a\xc3", "invalid UTF-8 at byte 1"},
		{"leading slash", "/a", "empty segment at byte 0"},
		{"trailing slash", "a/", "empty segment at byte 2"},
		{"double slash", "abc//d", "empty segment at byte 4"},
		{"only slash", "/", "empty segment at byte 0"},
		{"dot", "a/./b", `segment "." at byte 2`},
		{"dotdot", "a/..", `segment ".." at byte 2`},
		{"dot alone", ".", `segment "." at byte 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateKey(tt.key)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ValidateKey: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, store.ErrBadKey) {
				t.Fatalf("ValidateKey = %v, want ErrBadKey", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "key: ") {
				t.Fatalf("ValidateKey = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Writes refuse bad keys before queueing them.
func TestWritesValidateKeys(t *testing.T) {
	s := openTest(t)
	if _, err := s.Set(t.Context(), "a//b", nil, nil); !errors.Is(err, store.ErrBadKey) {
		t.Errorf("Set: %v, want ErrBadKey", err)
	}
	if _, err := s.Delete(t.Context(), "", nil); !errors.Is(err, store.ErrBadKey) {
		t.Errorf("Delete: %v, want ErrBadKey", err)
	}
	if _, _, err := s.Get("/x"); !errors.Is(err, store.ErrBadKey) {
		t.Errorf("Get: %v, want ErrBadKey", err)
	}
	rec := store.Record{Key: "..", VV: store.VV{id(1): 1}, Lamport: 1}
	if _, err := s.Apply(t.Context(), rec); !errors.Is(err, store.ErrBadKey) {
		t.Errorf("Apply: %v, want ErrBadKey", err)
	}
}
