package main

import (
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// parseArgs parses fs's flags wherever they stand in args and returns the
// other arguments in order: "ckctl set k v --if-version 3" works as well
// as "ckctl set --if-version 3 k v". "--" ends the flags; a lone "-" is an
// argument.
//
// The flag package stops at the first argument that is not a flag; so
// parse, take that argument, and parse again from the one after it.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if endsWithTerminator(fs, args[:len(args)-len(rest)]) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// endsWithTerminator reports whether the arguments the flag package just
// consumed ended with "--" as a terminator, rather than as the value of a
// flag ("--file --" names a file called "--"). It walks them as the flag
// package did.
func endsWithTerminator(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
		}
		i++ // the next argument was this flag's value
	}
	return false
}

// optUint is a uint64 flag that remembers whether it was given, since 0
// is a meaningful value (--if-version 0: only if absent).
type optUint struct {
	v   uint64
	set bool
}

func (o *optUint) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// ptr is the value, or nil when the flag was not given.
func (o *optUint) ptr() *uint64 {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}

// writeFlags are the flags of set and del.
type writeFlags struct {
	ifVersion optUint
	wait      int
	timeout   time.Duration
}

func (w *writeFlags) register(fs *flag.FlagSet) {
	fs.Var(&w.ifVersion, "if-version", "write only if the local copy's version is `V` (0: only if absent or deleted)")
	fs.IntVar(&w.wait, "wait", 0, "wait until `N` peers hold the write durably")
	fs.DurationVar(&w.timeout, "timeout", 0, "how long --wait waits (`D`, such as 500ms or 5s; default the daemon's, 5s); "+
		"the call as a whole then gets D plus 5s")
}

func (w *writeFlags) options() (rpc.WriteOptions, error) {
	if w.wait < 0 {
		return rpc.WriteOptions{}, usageErr(nil, "--wait %d: want a number of peers", w.wait)
	}
	if w.timeout < 0 {
		return rpc.WriteOptions{}, usageErr(nil, "--timeout %v: want a positive duration", w.timeout)
	}
	return rpc.WriteOptions{IfVersion: w.ifVersion.ptr(), Wait: w.wait, Timeout: rpc.Duration(w.timeout)}, nil
}
