package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

var membersCmd = &command{
	name:    "members",
	args:    "[trust ID]",
	summary: "show the member table, or trust a quarantined peer",
	detail: "Prints the member table, this node too, marked with \"*\" after its ID:\n" +
		"ID NAME ADDR STATE KEYS LAMPORT LAST-HEARD. -o json prints the API's array.\n\n" +
		"members trust ID lifts the quarantine of a peer met again after a long separation\n" +
		"(over purge_log_ttl), so that this node syncs with it; run it on the peer too for this node.\n" +
		"Prints the peer's row; -o json prints it as the API's object.",
	maxArgs: 2,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			switch {
			case len(args) == 0:
				return printMembers(e)
			case args[0] == "trust" && len(args) == 2:
				return trustMember(e, args[1])
			case args[0] == "trust":
				return usageErr(nil, "trust takes one node ID")
			}
			return usageErr(nil, "unknown members subcommand %q (want: trust ID)", args[0])
		}
	},
}

func printMembers(e *env) error {
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
	printMemberHeader(tw)
	now := time.Now()
	for _, m := range members {
		printMemberRow(tw, m, now)
	}
	return tw.Flush()
}

func printMemberHeader(w io.Writer) {
	fmt.Fprintln(w, "ID\tNAME\tADDR\tSTATE\tKEYS\tLAMPORT\tLAST-HEARD")
}

func printMemberRow(w io.Writer, m rpc.Member, now time.Time) {
	id := m.ID
	if m.Self {
		id += "*"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, dash(m.Name), dash(m.Addr),
		m.State, m.Keys, m.Lamport, lastHeard(m, now))
}

// trustMember lifts a quarantined peer's quarantine and prints its row.
func trustMember(e *env, id string) error {
	m, err := e.client.Trust(e.ctx, id)
	if err != nil {
		return err
	}
	if e.json() {
		return e.printJSON(m)
	}
	e.warnf("trusted %s: syncing with it resumes once it trusts this node too (ckctl members trust on it)", dash(m.Name))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	printMemberHeader(tw)
	printMemberRow(tw, m, time.Now())
	return tw.Flush()
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
