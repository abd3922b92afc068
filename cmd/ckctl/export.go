package main

import (
	"bufio"
	"flag"
	"io"
)

var exportCmd = &command{
	name:    "export",
	args:    "[PREFIX]",
	summary: "back up records as JSON lines",
	detail: "Writes the records with PREFIX to stdout as JSON lines, versions kept and\n" +
		"tombstones included: a backup that 'ckctl import' restores. Shows progress (records\n" +
		"written, and the rate) on stderr when it is a terminal and stdout is not.",
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			var out io.Writer = e.stdout
			var p *progress
			if isTerminal(e.stderr) && !isTerminal(e.stdout) {
				p = newProgress(e.stderr, "export", "written", 0)
				out = lineWriter{w: out, p: p}
			}
			w := bufio.NewWriterSize(out, 64<<10)
			info, err := e.client.ExportInfo(e.ctx, prefix, w)
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			p.done()
			if err == nil {
				syncingWarning(e, info, "export")
			}
			return err
		}
	},
}
