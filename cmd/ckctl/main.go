// Command ckctl is the command line client of ckd, CloudKnowledge's daemon.
// It is a thin client of the local API (package rpc): one file per
// subcommand, each turning flags into one or a few API calls and the
// answer into text for people or JSON (-o json) for programs.
//
// Values go to stdout byte-exact, messages to stderr prefixed "ckctl: ".
// Exit status: 0 success; 1 failure; 2 usage; 3 key not found; 4 version
// mismatch; 5 rejected by a hook; 6 stored but fewer peers acknowledged
// than --wait asked; 7 daemon unreachable (or served by a process ckctl
// does not trust: rpc.CheckServer).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudknowledge/ck/rpc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses: a contract, documented in README.md (ckctl).
const (
	exitOK              = 0
	exitFailure         = 1
	exitUsage           = 2
	exitNotFound        = 3
	exitVersionMismatch = 4
	exitRejected        = 5
	exitWaitShortfall   = 6
	exitUnreachable     = 7
)

// env is what a command runs with.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	g      *globals
	client *rpc.Client
}

// globals are the flags every command takes, before or after its name.
type globals struct {
	socket  string
	output  string
	version bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.socket, "socket", g.socket, "the daemon's socket `PATH` (default $CK_SOCKET, else ckd's default)")
	fs.StringVar(&g.output, "o", g.output, "output `format`: text or json")
	fs.BoolVar(&g.version, "version", g.version, "print ckctl's version and exit")
}

// socketPath resolves the socket: --socket, then $CK_SOCKET, then the
// default ckd uses for this user, or the system daemon's when this user
// has none (rpc.ClientSocket).
func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	if s := os.Getenv("CK_SOCKET"); s != "" {
		return s
	}
	return rpc.ClientSocket()
}

func (e *env) json() bool { return e.g.output == "json" }

// printJSON writes v indented, for people reading -o json too.
func (e *env) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(append(b, '\n'))
	return err
}

// warnf writes a message to stderr.
func (e *env) warnf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "ckctl: "+format+"\n", args...)
}

// isTerminal tells whether w is a terminal; a variable so tests can
// pretend. A character device is close enough: /dev/null is one too, and
// what is written there does not matter.
var isTerminal = func(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run is ckctl without the process: it parses args, runs a command and
// returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{output: "text"}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, g: g}

	// Before the command's name only the globals and the seed's -s/-g
	// may stand; the command parses the rest, globals included.
	top := flag.NewFlagSet("ckctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	seedSet := top.Bool("s", false, "set KEY VALUE (the seed's form)")
	seedGet := top.Bool("g", false, "get KEY (the seed's form)")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		return e.report(usageErr(nil, "%v", err))
	}
	rest := top.Args()
	var name string
	switch {
	case *seedSet && *seedGet:
		return e.report(usageErr(nil, "-s and -g exclude each other"))
	case *seedSet:
		name = "set"
	case *seedGet:
		name = "get"
	case g.version:
		fmt.Fprintln(stdout, "ckctl", rpc.Version)
		return exitOK
	case len(rest) == 0:
		return e.report(usageErr(nil, "no command given"))
	default:
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		return help(stdout, stderr, rest)
	}
	cmd := lookup(name)
	if cmd == nil {
		return e.report(usageErr(nil, "unknown command %q", name))
	}
	return e.report(e.runCommand(cmd, rest))
}

func (e *env) runCommand(cmd *command, args []string) error {
	fs := flag.NewFlagSet("ckctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.g.register(fs)
	runFn := cmd.setup(fs)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, cmd, fs)
		return nil
	}
	if err != nil {
		return usageErr(cmd, "%v", err)
	}
	if e.g.version {
		fmt.Fprintln(e.stdout, "ckctl", rpc.Version)
		return nil
	}
	if e.g.output != "text" && e.g.output != "json" {
		return usageErr(cmd, "-o %q: want text or json", e.g.output)
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		return usageErr(cmd, "wrong number of arguments")
	}
	if !cmd.offline {
		e.client = rpc.NewClient(e.g.socketPath())
		defer e.client.Close()
	}
	err = runFn(e, pos)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == nil {
		ue.cmd = cmd
	}
	return err
}

// usageError is a mistake on the command line: exit status 2, with the
// command's synopsis.
type usageError struct {
	cmd *command
	msg string
}

func (u *usageError) Error() string { return u.msg }

func usageErr(cmd *command, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// notFoundError is a key get did not find.
type notFoundError struct{ key string }

func (n *notFoundError) Error() string { return "key not found: " + n.key }

// report prints err, if any, and returns the exit status it means.
func (e *env) report(err error) int {
	if err == nil {
		return exitOK
	}
	var (
		ue *usageError
		un *rpc.UnreachableError
		ut *rpc.UntrustedServerError
		nf *notFoundError
		ae *rpc.Error
	)
	switch {
	case errors.As(err, &ue):
		e.warnf("%s", ue.msg)
		if ue.cmd != nil {
			fmt.Fprintf(e.stderr, "usage: ckctl %s %s\nRun 'ckctl help %s' for its flags.\n", ue.cmd.name, ue.cmd.args, ue.cmd.name)
		} else {
			printShortUsage(e.stderr)
		}
		return exitUsage
	case errors.As(err, &un):
		e.warnf("cannot reach ckd at %s: %v; is ckd running? start it with `ckd`, or pass --socket / set CK_SOCKET", un.Socket, un.Err)
		return exitUnreachable
	case errors.As(err, &ut):
		// Not the daemon this user meant to reach: as unreachable.
		e.warnf("%v", ut)
		return exitUnreachable
	case errors.As(err, &nf):
		e.warnf("%v", nf)
		return exitNotFound
	case errors.Is(err, rpc.ErrNotFound):
		e.warnf("%v", err)
		return exitNotFound
	case errors.Is(err, rpc.ErrVersionMismatch):
		e.warnf("%v", err)
		return exitVersionMismatch
	case errors.Is(err, rpc.ErrHookRejected):
		msg := err.Error()
		if !strings.HasPrefix(msg, "rejected by") {
			msg = "rejected by hook: " + msg
		}
		e.warnf("%s", msg)
		return exitRejected
	case errors.Is(err, rpc.ErrWaitTimeout) && errors.As(err, &ae):
		if ae.Wanted > 0 {
			e.warnf("stored, but only %d of %d peers acknowledged", ae.Acked, ae.Wanted)
		} else {
			e.warnf("%v", err)
		}
		return exitWaitShortfall
	case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
		e.warnf("interrupted")
		return exitFailure
	default:
		e.warnf("%v", err)
		return exitFailure
	}
}

// A command is one subcommand. setup registers its flags on fs and
// returns the function that runs it with the positional arguments.
type command struct {
	name    string
	args    string // the synopsis after the name
	summary string // one line for the command list
	detail  string // what it prints, for 'ckctl help COMMAND'
	minArgs int
	maxArgs int  // -1: any number
	offline bool // needs no daemon
	setup   func(fs *flag.FlagSet) func(e *env, args []string) error
}

// commands lists the subcommands in the order help shows them.
var commands = []*command{
	setCmd, getCmd, delCmd, listCmd, watchCmd, membersCmd, statusCmd, healthCmd,
	exportCmd, importCmd, reloadCmd, rejoinCmd, keygenCmd,
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
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
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
global flags:
  --socket PATH   the daemon's socket
  -o text|json    output format; json is for programs
  --version       print ckctl's version

For the seed's users: "ckctl -s KEY VALUE" is set, "ckctl -g KEY" is get.
Run 'ckctl help COMMAND' for a command's flags and output.

exit status: 0 ok, 1 failure, 2 usage, 3 key not found, 4 version mismatch,
5 rejected by a hook, 6 stored but fewer peers acknowledged than --wait,
7 daemon unreachable.
`)
}

// printCommandUsage shows a command's synopsis, summary and own flags.
func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: ckctl %s %s\n\n%s\n", cmd.name, cmd.args, cmd.detail)
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "socket" || f.Name == "o" || f.Name == "version" {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		if arg != "" {
			arg = " " + arg
		}
		lines = append(lines, fmt.Sprintf("  %s%s%s\n      %s\n", dash, f.Name, arg, usage))
	})
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nflags:\n%s", strings.Join(lines, ""))
	}
	fmt.Fprintf(w, "\nglobal flags: --socket PATH, -o text|json, --version\n")
}

// help prints the usage, or a command's.
func help(stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		printUsage(stdout)
		return exitOK
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "ckctl: unknown command %q\n", args[0])
		printShortUsage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(fs)
	printCommandUsage(stdout, cmd, fs)
	return exitOK
}
