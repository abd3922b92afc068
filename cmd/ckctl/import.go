package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

var importCmd = &command{
	name:    "import",
	args:    "[FILE|-] [--as-new]",
	summary: "restore records from JSON lines",
	detail: "Applies the JSON lines of records in FILE (default stdin), as 'ckctl export' writes them:\n" +
		"a restore, versions kept, no on_set hook. Prints \"imported N records, M applied\";\n" +
		"-o json prints {\"records\",\"applied\"}. Shows progress on stderr when it is a terminal.",
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		asNew := fs.Bool("as-new", false, "write the records as new local writes, through on_set")
		return func(e *env, args []string) error {
			var r io.Reader = e.stdin
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			var p *progress
			if isTerminal(e.stderr) {
				p = &progress{r: r, w: e.stderr}
				r = p
			}
			res, err := e.client.Import(e.ctx, r, *asNew)
			p.done()
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(res)
			}
			_, err = fmt.Fprintf(e.stdout, "imported %d records, %d applied\n", res.Records, res.Applied)
			return err
		}
	},
}

// progress counts the lines sent and shows the count on a terminal, at
// most a few times a second.
type progress struct {
	r     io.Reader
	w     io.Writer
	lines int
	last  time.Time
	shown bool
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.lines += bytes.Count(b[:n], []byte{'\n'})
	if now := time.Now(); now.Sub(p.last) > 200*time.Millisecond {
		p.last = now
		p.show()
	}
	return n, err
}

func (p *progress) show() {
	fmt.Fprintf(p.w, "\rckctl: import: %d records sent", p.lines)
	p.shown = true
}

// done ends the progress line.
func (p *progress) done() {
	if p == nil || !p.shown {
		return
	}
	p.show()
	fmt.Fprintln(p.w)
}
