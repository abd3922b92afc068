package main

import (
	"bufio"
	"flag"
)

var exportCmd = &command{
	name:    "export",
	args:    "[PREFIX]",
	summary: "back up records as JSON lines",
	detail: "Writes the records with PREFIX to stdout as JSON lines, versions kept and\n" +
		"tombstones included: a backup that 'ckctl import' restores.",
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			w := bufio.NewWriterSize(e.stdout, 64<<10)
			info, err := e.client.ExportInfo(e.ctx, prefix, w)
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			if err == nil {
				syncingWarning(e, info, "export")
			}
			return err
		}
	},
}
