package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

var rejoinCmd = &command{
	name:    "rejoin",
	args:    "",
	summary: "start afresh from the cluster after a long separation",
	detail: "On a node that quarantines its peers after a long separation (over purge_log_ttl): moves its data\n" +
		"aside to DATA_DIR/stale-<UTC time>/, pulls a fresh copy from the peers as a new node (a new\n" +
		"node id), then writes again this node's own writes made since it was last in sync. Waits\n" +
		"until that is done; meanwhile the daemon answers other calls with 503 syncing. Prints a\n" +
		"summary; -o json prints {\"stale_dir\",\"reapplied\",\"skipped\",\"old_id\",\"new_id\",\"peer\",\n" +
		"\"received\",\"last_in_sync\"}. Interrupting ckctl does not stop the rejoin.",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			res, err := rejoinWithNote(e)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(res)
			}
			peer := res.Peer
			if peer == "" {
				peer = "no peer (none answered)"
			}
			_, err = fmt.Fprintf(e.stdout, "rejoined as %s (was %s)\nold data kept in %s\npulled %d records from %s\n"+
				"re-applied %d of this node's writes made since it was last in sync (%s), %d already held by the cluster\n",
				res.NewID, res.OldID, res.StaleDir, res.Received, peer,
				res.Reapplied, dash(res.LastInSync), res.Skipped)
			return err
		}
	},
}

// rejoinNoteAfter is how long a rejoin runs before ckctl says what it is
// doing: a daemon that refuses (no long separation to settle, a rejoin
// already running) answers at once, and then ckctl must not have claimed
// the data was being moved. A variable for tests.
var rejoinNoteAfter = 500 * time.Millisecond

// rejoinWithNote asks for the rejoin and, in text mode, tells on stderr
// that it is under way once the daemon has been at it for rejoinNoteAfter.
func rejoinWithNote(e *env) (rpc.RejoinResult, error) {
	type answer struct {
		res rpc.RejoinResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := e.client.Rejoin(e.ctx)
		done <- answer{res, err}
	}()
	t := time.NewTimer(rejoinNoteAfter)
	defer t.Stop()
	for {
		select {
		case a := <-done:
			return a.res, a.err
		case <-t.C:
			if !e.json() {
				e.warnf("rejoining: this node's data is moved aside and a fresh copy pulled from the cluster; this takes as long as a bootstrap")
			}
		}
	}
}
