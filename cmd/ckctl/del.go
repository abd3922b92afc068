package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/cloudknowledge/ck/rpc"
)

var delCmd = &command{
	name:    "del",
	args:    "KEY | --prefix P | --all [--if-version V] [--wait N [--timeout D]]",
	summary: "delete a key, or every key with a prefix",
	detail: "A missing key is not an error. Prints nothing; -o json prints the tombstone.\n" +
		"--prefix P deletes every key that starts with P, one by one (keys written meanwhile\n" +
		"may stay), and prints \"deleted N keys\" (-o json: {\"deleted\": N}). An empty prefix\n" +
		"would delete every key: that takes --all instead. --wait applies to each key; a\n" +
		"shortfall on any does not stop the others and exits 6 at the end.\n" +
		"--timeout D is --wait's bound, as for set (see 'ckctl help set').",
	minArgs: 0,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		var w writeFlags
		w.register(fs)
		var prefix optString
		fs.Var(&prefix, "prefix", "delete every key that starts with `P`")
		all := fs.Bool("all", false, "delete every key")
		return func(e *env, args []string) error {
			opts, err := w.options()
			if err != nil {
				return err
			}
			switch {
			case len(args) == 1 && (prefix.set || *all):
				return usageErr(nil, "give KEY, --prefix or --all, not more than one")
			case len(args) == 1:
				return delOne(e, args[0], opts)
			case prefix.set && *all:
				return usageErr(nil, "give --prefix or --all, not both")
			case !prefix.set && !*all:
				return usageErr(nil, "no KEY given (or --prefix P, or --all)")
			case prefix.set && prefix.v == "":
				return usageErr(nil, "an empty --prefix would delete every key: say --all to mean that")
			case opts.IfVersion != nil:
				return usageErr(nil, "--if-version applies to one KEY, not to --prefix or --all")
			}
			return delPrefix(e, prefix.v, opts)
		}
	},
}

func delOne(e *env, key string, opts rpc.WriteOptions) error {
	rec, err := e.client.Delete(e.ctx, key, opts)
	if err != nil {
		return err
	}
	if e.json() {
		return e.printJSON(rec)
	}
	return nil
}

// delPrefix deletes the keys with prefix as it lists them (the daemon has
// no prefix delete: each key is its own write, through hooks and
// replication as any other), and prints how many it deleted.
func delPrefix(e *env, prefix string, opts rpc.WriteOptions) error {
	var (
		n         int
		shortfall *rpc.Error // the first, with how many there were
		short     int
	)
	err := e.client.ListAll(e.ctx, prefix, false, func(r rpc.Record) error {
		_, err := e.client.Delete(e.ctx, r.Key, opts)
		var ae *rpc.Error
		switch {
		case errors.Is(err, rpc.ErrWaitTimeout) && errors.As(err, &ae):
			short++ // deleted all the same
			if shortfall == nil {
				shortfall = ae
			}
		case err != nil:
			return fmt.Errorf("deleting %q: %w", r.Key, err)
		}
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleted %d keys, then: %w", n, err)
	}
	if e.json() {
		out := map[string]int{"deleted": n}
		if shortfall != nil {
			out["short"] = short // keys fewer peers acknowledged than --wait
		}
		err = e.printJSON(out)
	} else {
		_, err = fmt.Fprintf(e.stdout, "deleted %d keys\n", n)
	}
	if err == nil && shortfall != nil {
		s := *shortfall
		s.Message = fmt.Sprintf("%d of the %d deleted keys had fewer acknowledgements than --wait; the first: %s", short, n, s.Message)
		return &jsonPrinted{&s}
	}
	return err
}

// jsonPrinted is an error whose JSON the command printed already: report
// adds none.
type jsonPrinted struct{ err error }

func (j *jsonPrinted) Error() string { return j.err.Error() }
func (j *jsonPrinted) Unwrap() error { return j.err }

// optString is a string flag that remembers whether it was given, since
// the empty string is a value (--prefix "").
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string {
	if o == nil {
		return ""
	}
	return o.v
}

func (o *optString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}
