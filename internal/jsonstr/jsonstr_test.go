package jsonstr_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/internal/jsonstr"
)

// encodingJSON is what encoding/json writes for s.
func encodingJSON(t testing.TB, s string, html bool) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func check(t testing.TB, s string) {
	for _, html := range []bool{true, false} {
		got, want := jsonstr.Append(nil, s, html), encodingJSON(t, s, html)
		if !bytes.Equal(got, want) {
			t.Fatalf("Append(%q, html=%v) = %s, encoding/json writes %s", s, html, got, want)
		}
	}
}

func TestAppendMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\x00\x01\x1f\x7f", "\b\f\n\r\t", "<a & b>",
		"\u2028\u2029", "é☃𝄞", "bad \xff utf8 \xc3", "\xed\xa0\x80"} {
		check(t, s)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		check(t, string(b))
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("a\"<\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}

// BenchmarkAppend: a 256-byte ASCII value, as a record's answer carries.
func BenchmarkAppend(b *testing.B) {
	s := strings.Repeat("abcdefgh", 32)
	buf := make([]byte, 0, 512)
	for range b.N {
		buf = jsonstr.Append(buf[:0], s, true)
	}
}
