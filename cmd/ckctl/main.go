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
	"time"

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
	socket         string
	output         string
	version        bool
	connectTimeout time.Duration
	timeout        time.Duration
}

// Defaults of the globals; README.md (ckctl) documents them.
const (
	defaultConnectTimeout = 2 * time.Second
	defaultTimeout        = 30 * time.Second
)

// newGlobals returns the globals' defaults: the timeout from $CK_TIMEOUT
// when it is set.
func newGlobals() (*globals, error) {
	g := &globals{output: "text", connectTimeout: defaultConnectTimeout, timeout: defaultTimeout}
	if s := os.Getenv("CK_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return g, fmt.Errorf("CK_TIMEOUT=%q: want a positive duration such as 10s", s)
		}
		g.timeout = d
	}
	return g, nil
}

// globalFlags are the names register defines, which a command's usage
// does not repeat.
var globalFlags = []string{"socket", "o", "version", "connect-timeout", "timeout"}

// register defines the globals on fs, but for a name the command defines
// already: set and del keep --timeout for their wait (writeFlags).
func (g *globals) register(fs *flag.FlagSet) {
	def := func(name string, f func()) {
		if fs.Lookup(name) == nil {
			f()
		}
	}
	def("socket", func() {
		fs.StringVar(&g.socket, "socket", g.socket, "the daemon's socket `PATH` (default $CK_SOCKET, else ckd's default)")
	})
	def("o", func() { fs.StringVar(&g.output, "o", g.output, "output `format`: text or json") })
	def("version", func() {
		fs.BoolVar(&g.version, "version", g.version, "print ckctl's version (and the daemon's) and exit")
	})
	def("connect-timeout", func() {
		fs.DurationVar(&g.connectTimeout, "connect-timeout", g.connectTimeout, "how long to wait for a daemon that is starting (`D`)")
	})
	def("timeout", func() {
		fs.DurationVar(&g.timeout, "timeout", g.timeout, "how long to wait for the daemon's answer (`D`, default $CK_TIMEOUT, else 30s)")
	})
}

// check refuses globals that make no sense.
func (g *globals) check() error {
	switch {
	case g.output != "text" && g.output != "json":
		return usageErr(nil, "-o %q: want text or json", g.output)
	case g.connectTimeout < 0:
		return usageErr(nil, "--connect-timeout %v: want a duration, 0 or more", g.connectTimeout)
	case g.timeout <= 0:
		return usageErr(nil, "--timeout %v: want a positive duration", g.timeout)
	}
	return nil
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

// newClient is the client every command but the offline ones uses.
func (g *globals) newClient() *rpc.Client {
	return rpc.NewClientOptions(g.socketPath(), rpc.ClientOptions{ConnectTimeout: g.connectTimeout, Timeout: g.timeout})
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
	g, gerr := newGlobals()
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, g: g}
	if gerr != nil {
		return e.report(usageErr(nil, "%v", gerr))
	}

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
		return e.report(printVersion(e))
	case len(rest) == 0:
		return e.report(usageErr(nil, "no command given"))
	default:
		name, rest = rest[0], rest[1:]
	}
	cmd := lookup(name)
	if cmd == nil {
		return e.report(usageErr(nil, "unknown command %q", name))
	}
	return e.report(e.runCommand(cmd, rest))
}

// newFlagSet is cmd's flag set, its own flags and the globals, and the
// function that runs it.
func (e *env) newFlagSet(cmd *command) (*flag.FlagSet, func(*env, []string) error) {
	fs := flag.NewFlagSet("ckctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := cmd.setup(fs)
	e.g.register(fs)
	return fs, runFn
}

func (e *env) runCommand(cmd *command, args []string) error {
	fs, runFn := e.newFlagSet(cmd)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, cmd, fs)
		return nil
	}
	if err != nil {
		return usageErr(cmd, "%v", err)
	}
	if e.g.version {
		return printVersion(e)
	}
	if err := e.g.check(); err != nil {
		return err
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		return usageErr(cmd, "wrong number of arguments")
	}
	if !cmd.offline {
		e.client = e.g.newClient()
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
		na *rpc.NoAnswerError
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
		e.warnf("%v; is ckd running? start it with `ckd`, or pass --socket / set CK_SOCKET", err)
		return exitUnreachable
	case errors.As(err, &na):
		e.warnf("%v: is it stopped or overloaded? (--timeout or CK_TIMEOUT sets how long ckctl waits)", err)
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
		e.reportShortfall(err, ae)
		return exitWaitShortfall
	case errors.Is(err, context.Canceled) && e.ctx.Err() != nil:
		e.warnf("interrupted")
		return exitFailure
	default:
		e.warnf("%v", err)
		return exitFailure
	}
}

// reportShortfall tells that a write was stored but not acknowledged by as
// many peers as --wait asked, with the daemon's reason ("within 5s", "only
// 1 peers are alive"); -o json also prints the API's error object, acked
// and wanted included, on stdout.
func (e *env) reportShortfall(err error, ae *rpc.Error) {
	msg := err.Error()
	if ae.Wanted > 0 && !strings.Contains(msg, "acknowledged") {
		msg = fmt.Sprintf("stored, but only %d of %d peers acknowledged: %s", ae.Acked, ae.Wanted, msg)
	}
	e.warnf("%s", msg)
	var printed *jsonPrinted
	if e.json() && !errors.As(err, &printed) {
		e.printJSON(struct {
			Error  string `json:"error"`
			Code   string `json:"code"`
			Acked  int    `json:"acked"`
			Wanted int    `json:"wanted"`
		}{msg, ae.Code, ae.Acked, ae.Wanted})
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

// commands lists the subcommands in the order help shows them. It is
// filled by init, since help and completion read it.
var commands []*command

func init() {
	commands = []*command{
		setCmd, getCmd, delCmd, listCmd, watchCmd, membersCmd, statusCmd, healthCmd,
		exportCmd, importCmd, reloadCmd, rejoinCmd, keygenCmd, completionCmd, helpCmd,
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}
