package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/cloudknowledge/ck/rpc"
)

var getCmd = &command{
	name:    "get",
	args:    "KEY [-v] [--fresh]",
	summary: "print a value",
	detail: "Prints KEY's value byte-exact (a newline is added only on a terminal).\n" +
		"-v prints \"version N\" to stderr; -o json prints the record (a value that is not\n" +
		"UTF-8 is base64 there, with \"encoding\":\"base64\").",
	minArgs: 1,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		verbose := fs.Bool("v", false, "print \"version N\" to stderr")
		fresh := fs.Bool("fresh", false, "ask the nodes that may hold a newer version (the key's witnesses, or every node) and take the newest answer")
		return func(e *env, args []string) error {
			key := args[0]
			if e.json() {
				g, info, err := e.client.Get(e.ctx, key, rpc.GetOptions{Fresh: *fresh})
				if err != nil {
					return notFound(key, err)
				}
				readWarnings(e, info)
				if *verbose {
					fmt.Fprintf(e.stderr, "version %d\n", g.Version)
				}
				return e.printJSON(g)
			}
			value, version, info, err := e.client.GetRaw(e.ctx, key, *fresh)
			if err != nil {
				return notFound(key, err)
			}
			readWarnings(e, info)
			if *verbose {
				fmt.Fprintf(e.stderr, "version %d\n", version)
			}
			if _, err := e.stdout.Write(value); err != nil {
				return err
			}
			if isTerminal(e.stdout) && (len(value) == 0 || value[len(value)-1] != '\n') {
				_, err = e.stdout.Write([]byte{'\n'})
			}
			return err
		}
	},
}

// notFound names the key in a not-found error.
func notFound(key string, err error) error {
	if errors.Is(err, rpc.ErrNotFound) {
		return &notFoundError{key: key}
	}
	return err
}

// readWarnings tells on stderr when an answer may be incomplete.
func readWarnings(e *env, info rpc.ReadInfo) {
	if info.Syncing {
		e.warnf("warning: ckd is still bootstrapping; the answer may be stale")
	}
	switch {
	case !info.Fresh:
	case info.Asked > 0 && info.Asked < info.Alive:
		// The key's witnesses alone were asked (docs/PROTOCOL.md, Fresh reads).
		if info.Answered < info.Asked {
			e.warnf("warning: only %d of the %d nodes asked answered (%d alive)", info.Answered, info.Asked, info.Alive)
		}
	case info.Answered < info.Alive:
		e.warnf("warning: only %d of %d alive nodes answered", info.Answered, info.Alive)
	}
}
