package main

import (
	"encoding/json"
	"flag"
	"fmt"

	"github.com/cloudknowledge/ck/rpc"
)

var watchCmd = &command{
	name:    "watch",
	args:    "[PREFIX] [--since I]",
	summary: "follow changes",
	detail: "Prints one line per change of a key with PREFIX, \"OP KEY VERSION\" (set app/c 42,\n" +
		"del app/c 43), until interrupted. -o json prints the events as JSON lines.",
	minArgs: 0,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		var since optUint
		fs.Var(&since, "since", "first replay the changes with an index above `I`")
		return func(e *env, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			err := e.client.Watch(e.ctx, prefix, since.ptr(), func(ev rpc.Event) error {
				if e.json() {
					b, err := json.Marshal(ev)
					if err != nil {
						return err
					}
					_, err = e.stdout.Write(append(b, '\n'))
					return err
				}
				_, err := fmt.Fprintf(e.stdout, "%s %s %d\n", ev.Op, ev.Key, ev.Version)
				return err
			})
			if e.ctx.Err() != nil {
				return nil // interrupted: the normal end of a watch
			}
			return err
		}
	},
}
