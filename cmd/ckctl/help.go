package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cloudknowledge/ck/rpc"
)

var helpCmd = &command{
	name:    "help",
	args:    "[COMMAND]",
	summary: "describe ckctl, or a command and its flags",
	detail:  "Prints ckctl's usage, or COMMAND's: its synopsis, what it prints and its flags.",
	maxArgs: 1,
	offline: true,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			if len(args) == 0 {
				printUsage(e.stdout)
				return nil
			}
			cmd := lookup(args[0])
			if cmd == nil {
				return usageErr(nil, "unknown command %q", args[0])
			}
			fs, _ := e.newFlagSet(cmd)
			printCommandUsage(e.stdout, cmd, fs)
			return nil
		}
	},
}

func printShortUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: ckctl [--socket PATH] [-o text|json] COMMAND [ARGS] [FLAGS]\n")
	fmt.Fprintf(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, " %s", c.name)
	}
	fmt.Fprintf(w, "\nRun 'ckctl help' for more.\n")
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `usage: ckctl [--socket PATH] [-o text|json] COMMAND [ARGS] [FLAGS]

ckctl talks to ckd, the CloudKnowledge daemon, on its Unix socket
(--socket, else $CK_SOCKET, else %s).
It only talks to a daemon running as root, as you, or as the owner of the
socket's private directory (exit status 7 otherwise).
Flags may stand before or after the arguments; "--" ends the flags
(write "ckctl set k -- -1" for a value that starts with "-").

commands:
`, rpc.ClientSocket())
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
global flags:
  --socket PATH         the daemon's socket
  -o text|json          output format; json is for programs
  --connect-timeout D   how long to wait for a daemon that is starting: a
                        missing socket or a refused connection is tried
                        again for D (default %v; 0: once)
  --timeout D           how long to wait for an answer (default $CK_TIMEOUT,
                        else %v; watch and rejoin wait as long as they last,
                        export and import only for the answer to start;
                        set and del: see 'ckctl help set')
  --version             print ckctl's version and commit, and the daemon's

For the seed's users: "ckctl -s KEY VALUE" is set, "ckctl -g KEY" is get.
Run 'ckctl help COMMAND' for a command's flags and output.
Shell completion: 'ckctl completion bash|zsh|fish'.

exit status: 0 ok, 1 failure, 2 usage, 3 key not found, 4 version mismatch,
5 rejected by a hook, 6 stored but fewer peers acknowledged than --wait,
7 daemon unreachable or not answering within --timeout.
`, defaultConnectTimeout, defaultTimeout)
}

// printCommandUsage shows a command's synopsis, summary and own flags.
func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: ckctl %s %s\n\n%s\n", cmd.name, cmd.args, cmd.detail)
	var lines []string
	for _, f := range ownFlags(fs) {
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + arg
		}
		lines = append(lines, fmt.Sprintf("  %s%s\n      %s\n", dashed(f.Name), arg, usage))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nflags:\n%s", strings.Join(lines, ""))
	}
	fmt.Fprintf(w, "\nglobal flags: --socket PATH, -o text|json, --connect-timeout D, --timeout D, --version\n")
}

// ownFlags are the flags of fs that are the command's, not the globals;
// a command that defines a global's name (set and del: --timeout) keeps
// its own.
func ownFlags(fs *flag.FlagSet) []*flag.Flag {
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(globalFlags, f.Name) || !isGlobalFlag(f) {
			own = append(own, f)
		}
	})
	return own
}

// isGlobalFlag tells a global from a command's flag of the same name, by
// its usage text.
func isGlobalFlag(f *flag.Flag) bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	g := &globals{}
	g.register(fs)
	gf := fs.Lookup(f.Name)
	return gf != nil && gf.Usage == f.Usage
}

// dashed is a flag's name as help shows it: "--name", or "-x" for one
// letter.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
