package main

import (
	"flag"

	"github.com/cloudknowledge/ck/rpc"
)

var reloadCmd = &command{
	name:    "reload",
	args:    "",
	summary: "re-read hooks, keyring and log level",
	detail:  "Asks ckd to re-read its reloadable configuration. Prints nothing; -o json prints {\"status\":\"ok\"}.",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if err := e.client.Reload(e.ctx); err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rpc.Health{Status: "ok"})
			}
			return nil
		}
	},
}
