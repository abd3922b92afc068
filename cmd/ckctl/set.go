package main

import (
	"flag"
	"io"
	"os"
)

var setCmd = &command{
	name:    "set",
	args:    "KEY VALUE|- [--file F] [--if-version V] [--wait N [--timeout D]]",
	summary: "store a value",
	detail: "VALUE \"-\" reads the value from stdin; the bytes are stored exactly.\n" +
		"Prints nothing; -o json prints the stored record.\n" +
		"--timeout D here is how long the daemon waits for --wait's acknowledgements (not the\n" +
		"global --timeout): ckctl then waits D plus 5s for the answer (without it, the global\n" +
		"bound, and at least the daemon's 5s wait plus 5s with --wait). A shortfall exits 6 with\n" +
		"the daemon's reason; -o json prints the API's error object (acked, wanted) on stdout.",
	minArgs: 1,
	maxArgs: 2,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		file := fs.String("file", "", "read the value from file `F` instead of VALUE (\"-\": stdin)")
		var w writeFlags
		w.register(fs)
		return func(e *env, args []string) error {
			opts, err := w.options()
			if err != nil {
				return err
			}
			value, err := setValue(e, args, *file)
			if err != nil {
				return err
			}
			rec, err := e.client.Put(e.ctx, args[0], value, opts)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rec)
			}
			return nil
		}
	},
}

// setValue is the value set stores: the argument, stdin or a file's bytes,
// exactly (no newline added or removed).
func setValue(e *env, args []string, file string) ([]byte, error) {
	switch {
	case file != "" && len(args) == 2:
		return nil, usageErr(nil, "give VALUE or --file, not both")
	case file == "" && len(args) == 1:
		return nil, usageErr(nil, "no VALUE given (use \"-\" for stdin, or --file F)")
	case file == "-" || (file == "" && args[1] == "-"):
		return io.ReadAll(e.stdin)
	case file != "":
		return os.ReadFile(file)
	}
	return []byte(args[1]), nil
}
