package main

import (
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

var membersCmd = &command{
	name:    "members",
	args:    "",
	summary: "show the member table",
	detail: "Prints the member table, this node too, marked with \"*\" after its ID:\n" +
		"ID NAME ADDR STATE KEYS LAMPORT LAST-HEARD. -o json prints the API's array.",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			members, err := e.client.Members(e.ctx)
			if err != nil {
				return err
			}
			if e.json() {
				if members == nil {
					members = []rpc.Member{}
				}
				return e.printJSON(members)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tADDR\tSTATE\tKEYS\tLAMPORT\tLAST-HEARD")
			now := time.Now()
			for _, m := range members {
				id := m.ID
				if m.Self {
					id += "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, dash(m.Name), dash(m.Addr),
					m.State, m.Keys, m.Lamport, lastHeard(m, now))
			}
			return tw.Flush()
		}
	},
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lastHeard shows how long ago a member was heard from. last_heard_ms is
// read as a Unix time in milliseconds when it is one (after 2001), else
// as an age in milliseconds.
func lastHeard(m rpc.Member, now time.Time) string {
	switch {
	case m.Self:
		return "-"
	case m.LastHeardMS <= 0:
		return "never"
	}
	age := time.Duration(m.LastHeardMS) * time.Millisecond
	if m.LastHeardMS > 1e12 {
		age = now.Sub(time.UnixMilli(m.LastHeardMS))
	}
	return ago(age)
}

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return d.Round(100*time.Millisecond).String() + " ago"
	default:
		return d.Round(time.Second).String() + " ago"
	}
}
