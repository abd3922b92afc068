// Command ckd is the CloudKnowledge daemon: it keeps the key-value store on
// this machine and serves the local API that ckctl uses. With no -config it
// reads $CKD_CONFIG, else its default file when there is one
// ($XDG_CONFIG_HOME/ckd/config.hcl, /etc/ckd/config.hcl as root,
// ~/.config/ckd/config.hcl), else runs on the embedded default (one node on
// lo; see config.hcl.example).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/cloudknowledge/ck/daemon"
	"github.com/cloudknowledge/ck/internal/timerslack"
	"github.com/cloudknowledge/ck/rpc"
)

func main() {
	// First: it may execute this binary again, with a wider timer slack
	// for every thread (internal/timerslack). When it cannot, ckd runs as
	// it is; nothing depends on the slack but CPU spent on wake-ups.
	_ = timerslack.Ensure(timerslack.Want)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ckd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path    = fs.String("config", "", "HCL config `file` (default: $CKD_CONFIG, else the default file if present, else the embedded default)")
		o       daemon.Overrides
		check   = fs.Bool("check", false, "validate the configuration and exit")
		version = fs.Bool("version", false, "print the version and exit")
	)
	fs.StringVar(&o.DataDir, "data-dir", "", "data `dir`, overriding the config")
	fs.StringVar(&o.Socket, "socket", "", "API socket `path`, overriding the config")
	fs.StringVar(&o.NodeName, "node-name", "", "node `name`, overriding the config")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ckd [-config FILE] [-data-dir DIR] [-socket PATH] [-node-name NAME] [-check] [-version]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ckd: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *version {
		fmt.Fprintf(stdout, "ckd %s\n", rpc.Version)
		return 0
	}
	file, from := *path, "-config"
	if file == "" {
		var err error
		if file, from, err = daemon.FindConfig(); err != nil {
			fmt.Fprintf(stderr, "ckd: config: %v\n", err)
			return 1
		}
	}
	load := func() (daemon.Config, error) { return daemon.LoadWithOverrides(file, o) }
	cfg, err := load()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		if from == "$"+daemon.ConfigEnv {
			err = fmt.Errorf("%s: %w", from, err)
		}
		fmt.Fprintf(stderr, "ckd: config: %v\n", err)
		return 1
	}
	if *check {
		// What a start checks, binding nothing (daemon.Config.Check).
		if err := cfg.Check(); err != nil {
			fmt.Fprintf(stderr, "ckd: config: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "ckd: configuration is valid (%s)\n", describeConfig(file, from))
		return 0
	}
	return serve(cfg, load, file, stderr)
}

// describeConfig names the configuration in force: a file and how it was
// found, or the embedded default.
func describeConfig(file, from string) string {
	if file == "" {
		return daemon.EmbeddedDefault
	}
	return file + ", " + from
}

func serve(cfg daemon.Config, load func() (daemon.Config, error), file string, stderr io.Writer) int {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit())
	}
	if os.Getenv("GOGC") == "" {
		// A floor under the heap goal: the default GOGC collects a small
		// live heap many times a second under load (daemon.HeapFloor).
		defer daemon.TuneGC(daemon.HeapFloor)()
	}
	d, err := daemon.New(cfg, daemon.Options{LoadConfig: load, ConfigFile: file})
	if err != nil {
		fmt.Fprintf(stderr, "ckd: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = d.Reload(ctx) // Reload logs its own outcome
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ckd: %v\n", err)
		return 1
	}
	return 0
}
