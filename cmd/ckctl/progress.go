package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress shows on a terminal how many records an import has sent or an
// export written, of how many when known, and the rate, at most five
// times a second, on one line rewritten in place.
type progress struct {
	w     io.Writer
	cmd   string // "import" or "export"
	what  string // "sent" or "written"
	total int64  // records expected; 0: unknown
	n     int64
	start time.Time
	last  time.Time
	width int // of the last line shown, to blank what a shorter one leaves
	shown bool
}

func newProgress(w io.Writer, cmd, what string, total int64) *progress {
	now := time.Now()
	return &progress{w: w, cmd: cmd, what: what, total: total, start: now, last: now}
}

// add counts n more records.
func (p *progress) add(n int) {
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond {
		p.last = now
		p.show()
	}
}

func (p *progress) show() {
	line := fmt.Sprintf("ckctl: %s: %d records %s", p.cmd, p.n, p.what)
	if p.total > 0 {
		line = fmt.Sprintf("ckctl: %s: %d of %d records %s (%d%%)", p.cmd, p.n, p.total, p.what, p.n*100/p.total)
	}
	if secs := time.Since(p.start).Seconds(); secs >= 0.05 {
		line += fmt.Sprintf(", %.0f records/s", float64(p.n)/secs)
	}
	pad := max(p.width-len(line), 0)
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.shown = true
}

// done shows the final count and ends the line. Safe on a nil progress.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.show()
	fmt.Fprintln(p.w)
}

// lineCounter counts the lines read through it into a progress.
type lineCounter struct {
	r io.Reader
	p *progress
}

func (c lineCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(bytes.Count(b[:n], []byte{'\n'}))
	return n, err
}

// lineWriter counts the lines written through it into a progress.
type lineWriter struct {
	w io.Writer
	p *progress
}

func (c lineWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.add(bytes.Count(b[:n], []byte{'\n'}))
	return n, err
}

// countLines counts the non-blank lines of a regular file (the records an
// import of it sends), or returns 0 when f is not one (a pipe, a
// terminal) or cannot be read: the progress then shows no total. It
// leaves f at its start.
func countLines(f *os.File) int64 {
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	defer f.Seek(0, io.SeekStart)
	var n int64
	sc := bufio.NewReaderSize(f, 256<<10)
	blank := true
	for {
		b, err := sc.ReadSlice('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			blank = false
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if !blank {
			n++
		}
		blank = true
		if err != nil {
			return n
		}
	}
}
