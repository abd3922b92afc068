package main

import (
	"flag"
	"io"
	"os"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

var setCmd = &command{
	name:    "set",
	args:    "KEY VALUE|- [--file F] [--ttl D | --ephemeral] [--if-version V] [--wait N [--timeout D]]",
	summary: "store a value",
	detail: "VALUE \"-\" reads the value from stdin; the bytes are stored exactly.\n" +
		"Prints nothing; -o json prints the stored record.\n" +
		"--timeout D here is how long the daemon waits for --wait's acknowledgements (not the\n" +
		"global --timeout): ckctl then waits D plus 5s for the answer (without it, the global\n" +
		"bound, and at least the daemon's 5s wait plus 5s with --wait). A shortfall exits 6 with\n" +
		"the daemon's reason; -o json prints the API's error object (acked, wanted) on stdout.\n" +
		"--ttl D makes the key expire D after the write on every node (1s up to the\n" +
		"daemon's tombstone_ttl); writing it again restarts the time; get -o json shows\n" +
		"ttl_remaining_ms.\n" +
		"--ephemeral makes the key live as long as this ckd runs and is reachable: other\n" +
		"nodes hide it when it stops, is declared gone or restarts, and show it again after\n" +
		"a partition heals; a restart deletes it. Written from another node it becomes an\n" +
		"ordinary key.",
	minArgs: 1,
	maxArgs: 2,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		file := fs.String("file", "", "read the value from file `F` instead of VALUE (\"-\": stdin)")
		ttl := fs.Duration("ttl", 0, "expire the key `D` after the write, on every node (such as 30s or 5m; at least 1s)")
		ephemeral := fs.Bool("ephemeral", false, "keep the key only while this ckd runs and is reachable")
		var w writeFlags
		w.register(fs)
		return func(e *env, args []string) error {
			opts, err := w.options()
			if err != nil {
				return err
			}
			if *ttl != 0 && *ttl < time.Second {
				return usageErr(nil, "--ttl %v: want at least 1s", *ttl)
			}
			if *ttl != 0 && *ephemeral {
				return usageErr(nil, "--ttl and --ephemeral: a key is either ephemeral or expires, not both")
			}
			opts.TTL, opts.Ephemeral = rpc.Duration(*ttl), *ephemeral
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
