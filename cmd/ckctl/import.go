package main

import (
	"flag"
	"fmt"
	"io"
	"os"
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
			var total int64
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if isTerminal(e.stderr) {
					total = countLines(f)
				}
				r = f
			}
			var p *progress
			if isTerminal(e.stderr) {
				p = newProgress(e.stderr, "import", "sent", total)
				r = lineCounter{r: r, p: p}
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
