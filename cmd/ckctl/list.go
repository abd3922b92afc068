package main

import (
	"bufio"
	"flag"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/cloudknowledge/ck/rpc"
)

var listCmd = &command{
	name:    "list",
	args:    "[PREFIX] [--values]",
	summary: "list keys",
	detail: "Prints the keys with PREFIX, one a line, in byte order.\n" +
		"--values prints KEY<TAB>VALUE; a value that is not printable UTF-8 on one line\n" +
		"(or that starts with a double quote) is shown Go-quoted, so each key stays on one line.\n" +
		"-o json prints one JSON array of all the records, values included.",
	minArgs: 0,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		values := fs.Bool("values", false, "print the values too")
		return func(e *env, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			if e.json() {
				all := []rpc.Record{}
				// Records always carry their values: a record with an
				// empty "value" would read as an empty value.
				info, err := e.client.ListAllInfo(e.ctx, prefix, true, func(r rpc.Record) error {
					all = append(all, r)
					return nil
				})
				if err != nil {
					return err
				}
				syncingWarning(e, info, "list")
				return e.printJSON(all)
			}
			w := bufio.NewWriter(e.stdout)
			info, err := e.client.ListAllInfo(e.ctx, prefix, *values, func(r rpc.Record) error {
				w.WriteString(r.Key)
				if *values {
					w.WriteByte('\t')
					w.WriteString(showValue(r.Value))
				}
				return w.WriteByte('\n')
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			if err == nil {
				syncingWarning(e, info, "list")
			}
			return err
		}
	},
}

// syncingWarning tells on stderr that a listing or export came from a node
// still bootstrapping: records the cluster holds may be missing from it.
func syncingWarning(e *env, info rpc.ReadInfo, what string) {
	if info.Syncing {
		e.warnf("warning: this node is still syncing: the %s may be incomplete", what)
	}
}

// showValue is a value as list --values prints it: as is when it is
// printable UTF-8 (spaces allowed), else Go-quoted.
func showValue(v []byte) string {
	if len(v) > 0 && v[0] == '"' || !utf8.Valid(v) {
		return strconv.Quote(string(v))
	}
	for _, r := range string(v) {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(string(v))
		}
	}
	return string(v)
}
