package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/cloudknowledge/ck/rpc"
)

// healthCmd asks the daemon's health checks (README.md, The HTTP API):
// for scripts and supervisors that have a shell rather than HTTP.
var healthCmd = &command{
	name:    "health",
	args:    "[--live|--ready]",
	summary: "check that ckd is alive, or ready (exit 0 yes, 1 no)",
	detail: "Asks /v1/health: ready when the node serves, has bootstrapped and its disk is not full.\n" +
		"--ready asks /v1/health/ready (the same answer); --live asks /v1/health/live, which\n" +
		"is ok whenever the daemon answers at all, bootstrapping or on a full disk.\n" +
		"Prints \"ok\", or on stderr why not (syncing, shutting_down, disk_full); -o json prints\n" +
		"{\"status\":\"ok\"} or the API's {\"error\",\"code\"}.\n" +
		"Exit status: 0 healthy, 1 not, 7 unreachable.",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		live := fs.Bool("live", false, "liveness: is the daemon answering at all")
		ready := fs.Bool("ready", false, "readiness: serving, bootstrapped, disk not full (the default check)")
		return func(e *env, args []string) error {
			if *live && *ready {
				return usageErr(nil, "--live and --ready exclude each other")
			}
			check, what := e.client.Health, "ready"
			switch {
			case *live:
				check, what = e.client.Live, "live"
			case *ready:
				check = e.client.Ready
			}
			err := check(e.ctx)
			var ae *rpc.Error
			if err != nil && !errors.As(err, &ae) {
				return err // unreachable (7) or a broken answer (1)
			}
			if e.json() {
				var v any = rpc.Health{Status: "ok"}
				if err != nil {
					v = ae
				}
				if perr := e.printJSON(v); perr != nil {
					return perr
				}
			}
			if err != nil {
				// Not wrapped: the daemon's code must not map to another
				// exit status (not_found is 3 elsewhere).
				return fmt.Errorf("not %s: %s (%s)", what, ae.Message, ae.Code)
			}
			if !e.json() {
				_, err = fmt.Fprintln(e.stdout, "ok")
			}
			return err
		}
	},
}
