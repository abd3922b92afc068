package scripting

import (
	"context"
	"testing"
)

// FuzzLuaPattern: the matcher never panics except with a pattern error,
// whatever the subject and pattern. (`go test -fuzz FuzzLuaPattern`; the
// seeds run in every test run.)
func FuzzLuaPattern(f *testing.F) {
	for _, seed := range [][2]string{
		{"hello world", "(%w+) (%w+)"}, {"f(a(b)c)d", "%b()"}, {"THE (quick)", "%f[%a]%a+"},
		{"abcabc", "(a)(b)(c)%1%2%3"}, {"x", "[%"}, {"x", "[^]"}, {"x", "%b("}, {"x", "%f"},
		{"aaa", "a-a-$"}, {"", "()"}, {"a]b", "[]]"}, {"a", "(()"}, {"a", "%1"}, {"a", "[a-]*"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, src, pat string) {
		if len(src) > 64 || len(pat) > 32 {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(patternError); !ok {
					t.Fatalf("match(%q, %q) panicked: %v", src, pat, r)
				}
			}
		}()
		ms := &matchState{src: src, pat: pat, ctx: ctx}
		for s := 0; s <= len(src); s++ {
			ms.level = 0
			if e := ms.match(s, 0); e >= 0 {
				if e < s || e > len(src) {
					t.Fatalf("match(%q, %q) at %d ended at %d", src, pat, s, e)
				}
				for i := 0; i < ms.level; i++ {
					c := ms.capture[i]
					if c.len >= 0 && (c.init < 0 || c.init+c.len > len(src)) {
						t.Fatalf("capture %d out of range: %+v", i, c)
					}
				}
			}
		}
	})
}
