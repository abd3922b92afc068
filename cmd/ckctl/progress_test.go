package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCountLines(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want int64
	}{
		{"", 0},
		{"a\n", 1},
		{"a\n\n  \nb", 2}, // blank lines skipped, an unterminated last line counted
		{strings.Repeat("x", 300<<10) + "\ny\n", 2}, // a line longer than the read buffer
	} {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, []byte(tc.src), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := countLines(f); got != tc.want {
			t.Errorf("countLines(%.20q) = %d, want %d", tc.src, got, tc.want)
		}
		if off, _ := f.Seek(0, 1); off != 0 {
			t.Errorf("countLines left the file at %d, want 0", off)
		}
		f.Close()
	}
}

// TestProgressLine: with a total, the line says how many of how many,
// the percentage and the rate; a shorter line blanks what the last left.
func TestProgressLine(t *testing.T) {
	var b strings.Builder
	p := newProgress(&b, "import", "sent", 200)
	p.start = time.Now().Add(-2 * time.Second)
	p.n = 100
	p.show()
	if got := b.String(); !strings.HasPrefix(got, "\rckctl: import: 100 of 200 records sent (50%), ") || !strings.Contains(got, " records/s") {
		t.Errorf("progress line %q", got)
	}
	b.Reset()
	p.total, p.cmd, p.what = 0, "export", "written"
	p.done()
	if got := b.String(); !strings.HasPrefix(got, "\rckctl: export: 100 records written, ") || !strings.HasSuffix(got, " \n") {
		t.Errorf("final line %q: want the count, the rate, blanks over the longer line, a newline", got)
	}
}
