package main

import "flag"

var delCmd = &command{
	name:    "del",
	args:    "KEY [--if-version V] [--wait N [--timeout D]]",
	summary: "delete a key",
	detail:  "A missing key is not an error. Prints nothing; -o json prints the tombstone.",
	minArgs: 1,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		var w writeFlags
		w.register(fs)
		return func(e *env, args []string) error {
			opts, err := w.options()
			if err != nil {
				return err
			}
			rec, err := e.client.Delete(e.ctx, args[0], opts)
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
