package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudknowledge/ck/rpc"
)

var watchCmd = &command{
	name:    "watch",
	args:    "[PREFIX] [--since I] [--values]",
	summary: "follow changes",
	detail: "Prints one line per change of a key with PREFIX until interrupted:\n" +
		"\"INDEX OP KEY VERSION\" (7 set app/c 42, 8 del app/c 43); INDEX is what --since takes.\n" +
		"--values adds the value to each set: \"7 set app/c 42 hello\". A key or value is printed\n" +
		"as is, unless it is empty, starts with a double quote, or holds a space, a character that\n" +
		"does not print or bytes that are not UTF-8: then it is Go-quoted (\"app/with space\").\n" +
		"The change log keeps no values: --values reads each key when its change arrives, and a\n" +
		"set already overwritten or deleted by then has no value field.\n" +
		"When the daemon restarts, watch waits for it and resumes after the last index it saw,\n" +
		"so no change is lost or repeated; it says so on stderr. If the daemon's log no longer\n" +
		"holds those changes (410 compacted), it says so and exits 1.\n" +
		"-o json prints the events as JSON lines ({\"index\",\"op\",\"key\",\"version\",\"origin\"},\n" +
		"with --values \"value\", and \"encoding\":\"base64\" for a value that is not UTF-8).",
	minArgs: 0,
	maxArgs: 1,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		var since optUint
		fs.Var(&since, "since", "first replay the changes with an index above `I`")
		values := fs.Bool("values", false, "print each set's value too")
		return func(e *env, args []string) error {
			w := &watcher{e: e, values: *values}
			if len(args) == 1 {
				w.prefix = args[0]
			}
			if since.set {
				w.last, w.known = since.v, true
			}
			return w.run()
		}
	},
}

// watcher is one ckctl watch: it follows the daemon's change log through
// restarts, resuming after the last index it has seen (docs/ARCHITECTURE.md,
// ckctl watch resumes).
type watcher struct {
	e      *env
	prefix string
	values bool
	// last is the index the watch has reached: the last event's, or where
	// the daemon said the watch started (Ck-Index); known: it is set.
	last  uint64
	known bool
	// connected: the daemon has taken the watch at least once.
	connected bool
	lost      bool // the stream was lost and not yet resumed
}

// watchRetryPause is the pause between attempts to reach a daemon that
// is away, beyond the client's own dialling.
const watchRetryPause = 100 * time.Millisecond

// endError ends the watch: a failure to write what it prints, or a
// daemon whose log is not the one the watch followed.
type endError struct{ err error }

func (o *endError) Error() string { return o.err.Error() }
func (o *endError) Unwrap() error { return o.err }

// run follows the changes until interrupted or an error that reconnecting
// cannot mend.
func (w *watcher) run() error {
	ctx := w.e.ctx
	for {
		opts := rpc.WatchOptions{Prefix: w.prefix, Started: w.started}
		if w.known {
			since := w.last
			opts.Since = &since
		}
		err := w.e.client.WatchWith(ctx, opts, w.event)
		if ctx.Err() != nil {
			return nil // interrupted: the normal end of a watch
		}
		if err := w.fatal(err); err != nil {
			return err
		}
		if !w.lost {
			w.lost = true
			w.e.warnf("watch: lost the daemon (%v); resuming after index %d when it answers", err, w.last)
		}
		t := time.NewTimer(watchRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// fatal returns err if it ends the watch, nil if the watch should wait for
// the daemon and resume.
func (w *watcher) fatal(err error) error {
	var (
		oe *endError
		ut *rpc.UntrustedServerError
		ae *rpc.Error
	)
	switch {
	case errors.As(err, &oe), errors.As(err, &ut):
		return err
	case errors.Is(err, rpc.ErrUnreachable):
		if !w.connected {
			return err // no daemon to begin with: exit 7 as every command
		}
		return nil
	case errors.Is(err, rpc.ErrCompacted) && w.connected:
		return fmt.Errorf("watch: the daemon's change log no longer holds the changes after index %d: "+
			"some were lost while the watch was away (%w)", w.last, err)
	case errors.As(err, &ae):
		// The daemon going away says shutting_down; a rejoin, syncing.
		// Anything else is an answer to what was asked.
		if ae.Code == rpc.ErrShuttingDown.Code || ae.Code == rpc.ErrSyncing.Code || ae.Code == rpc.ErrBusy.Code {
			return nil
		}
		return err
	}
	return nil // the stream broke: the daemon died
}

// started is called each time the daemon takes the watch.
func (w *watcher) started(last uint64, ok bool) error {
	switch {
	case ok && w.known && last < w.last:
		// Indexes only grow in a data dir: this daemon's log is another's.
		return &endError{fmt.Errorf("watch: the daemon's change log ends at index %d, before this watch's %d "+
			"(a new data dir, or a rejoin): changes may have been lost", last, w.last)}
	case ok && !w.known:
		w.last, w.known = last, true
	}
	w.connected = true
	if w.lost {
		w.lost = false
		w.e.warnf("watch: resumed after index %d", w.last)
	}
	return nil
}

// event prints one change and moves the watch past it.
func (w *watcher) event(ev rpc.Event) error {
	if w.known && ev.Index <= w.last {
		return nil // replayed twice: cannot happen with a daemon that sends Ck-Index
	}
	var value []byte
	held := false
	if w.values && ev.Op == "set" {
		var err error
		if value, held, err = w.valueOf(ev); err != nil {
			return err
		}
	}
	if err := w.print(ev, value, held); err != nil {
		return &endError{err}
	}
	w.last, w.known = ev.Index, true
	return nil
}

// valueOf reads the value the set ev stored, if the node still holds that
// version (held).
func (w *watcher) valueOf(ev rpc.Event) (value []byte, held bool, err error) {
	value, version, _, err := w.e.client.GetRaw(w.e.ctx, ev.Key, false)
	switch {
	case errors.Is(err, rpc.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return value, version == ev.Version, nil
}

func (w *watcher) print(ev rpc.Event, value []byte, held bool) error {
	if w.e.json() {
		line := watchLine{Event: ev}
		if held {
			v := string(value)
			if !utf8.Valid(value) {
				v, line.Encoding = base64.StdEncoding.EncodeToString(value), "base64"
			}
			line.Value = &v
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		_, err = w.e.stdout.Write(append(b, '\n'))
		return err
	}
	out := fmt.Sprintf("%d %s %s %d", ev.Index, ev.Op, quoteField(ev.Key), ev.Version)
	if held {
		out += " " + quoteField(string(value))
	}
	_, err := fmt.Fprintln(w.e.stdout, out)
	return err
}

// watchLine is an event as watch -o json prints it.
type watchLine struct {
	rpc.Event
	Value    *string `json:"value,omitempty"`
	Encoding string  `json:"encoding,omitempty"`
}

// quoteField is a key or value as watch prints it, one field of a line
// split at spaces: as is when that is unambiguous, else Go-quoted.
func quoteField(s string) string {
	if s == "" || s[0] == '"' || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
