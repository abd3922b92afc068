package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// baseURL is the URL the client's requests name; the host is ignored, as
// every connection goes to the socket.
const baseURL = "http://ckd"

// maxErrorBody bounds how much of an error answer the client reads.
const maxErrorBody = 64 << 10

// Client talks to ckd's local API on its Unix socket. It is safe for
// concurrent use.
type Client struct {
	socket  string
	hc      *http.Client
	streams *http.Client // export and import: bounded until the answer starts
	opts    ClientOptions
}

// ClientOptions tune how a Client waits. The zero value waits for
// nothing: one dial, no bound on a call but its context.
type ClientOptions struct {
	// ConnectTimeout is how long a call keeps dialling a socket that is
	// missing or refuses connections: a daemon still starting (its socket
	// appears some tens of milliseconds after it starts) or restarting.
	// Nothing has been sent when a dial fails, so dialling again is safe.
	// 0: a single attempt.
	ConnectTimeout time.Duration
	// Timeout bounds each call, connecting included: past it the call
	// fails with a *NoAnswerError (a daemon stopped, or overloaded). A
	// write that waits for acknowledgements is bounded by its own wait
	// plus WriteMargin instead. Streams are bounded only until the answer
	// starts (Export, Import), or not at all (Watch, and Rejoin, which
	// lasts as long as a bootstrap). 0: no bound.
	Timeout time.Duration
}

// WriteMargin is what a write that waits for acknowledgements is given
// beyond its wait: the local commit, hooks and the answer.
const WriteMargin = 5 * time.Second

// DefaultWaitTimeout is the daemon's bound on a write's wait for
// acknowledgements when WriteOptions.Timeout is 0.
const DefaultWaitTimeout = 5 * time.Second

// UnreachableError is the error of a call that could not connect to the
// daemon. It matches ErrUnreachable with errors.Is.
type UnreachableError struct {
	Socket string
	Err    error // the dial's error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach ckd at %s: %v", e.Socket, e.Err)
}

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

func (e *UnreachableError) Unwrap() error { return e.Err }

// NoAnswerError is the error of a call the daemon did not answer within
// ClientOptions.Timeout (or a write's wait plus WriteMargin): it accepted
// the connection but said nothing, as a stopped (SIGSTOP) or hung daemon
// does. It matches ErrNoAnswer with errors.Is. A write may have been
// applied all the same.
type NoAnswerError struct {
	Socket string
	After  time.Duration
}

func (e *NoAnswerError) Error() string {
	return fmt.Sprintf("no answer in %v from ckd at %s", e.After, e.Socket)
}

// Is makes errors.Is(err, ErrNoAnswer) true.
func (e *NoAnswerError) Is(target error) bool { return target == ErrNoAnswer }

// NewClient returns a client of the daemon listening on socket, with the
// zero ClientOptions. Each connection is checked with CheckServer before a
// byte is written on it: a call to a socket served by another user's
// process fails with an *UntrustedServerError.
func NewClient(socket string) *Client {
	return NewClientOptions(socket, ClientOptions{})
}

// NewClientOptions is NewClient with options.
func NewClientOptions(socket string, opts ClientOptions) *Client {
	c := &Client{socket: socket, opts: opts}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dial(ctx)
		},
		// Every goroutine sharing the client keeps its connection: with
		// fewer idle slots than concurrent callers, each answer would
		// close a connection and the next call dial a new one.
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true, // same machine: compression only costs
	}
	// No overall timeout here: watches last until their context ends;
	// calls are bounded one by one (bound).
	c.hc = &http.Client{Transport: tr}
	// Export and import last as long as the data does: only the wait for
	// the answer, once the request is sent, is bounded.
	str := tr.Clone()
	str.ResponseHeaderTimeout = opts.Timeout
	c.streams = &http.Client{Transport: str}
	return c
}

// httpClient is the client a path is sent with.
func (c *Client) httpClient(path string) *http.Client {
	if path == "/v1/export" || path == "/v1/import" {
		return c.streams
	}
	return c.hc
}

// dialState is what the dials of one call found, so that a call whose
// bound ends while it is still dialling reports the daemon unreachable
// rather than silent. The transport dials under a context that keeps the
// call's values but not its deadline.
type dialState struct {
	mu      sync.Mutex
	lastErr error // the last failed dial's error
	ok      bool  // a dial succeeded
}

type dialStateKey struct{}

func (d *dialState) note(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.ok = true
	} else {
		d.lastErr = err
	}
}

// unreachable is the dial error to report for a call that never got a
// connection, or nil.
func (d *dialState) unreachable() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ok {
		return nil
	}
	return d.lastErr
}

// dial connects to the socket, dialling again for up to ConnectTimeout
// while it is missing or refuses (a daemon starting), with short pauses.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ds, _ := ctx.Value(dialStateKey{}).(*dialState)
	deadline := time.Now().Add(c.opts.ConnectTimeout)
	pause := 5 * time.Millisecond
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", c.socket)
		if err == nil {
			if err := CheckServer(conn, c.socket); err != nil {
				conn.Close()
				return nil, err
			}
			if ds != nil {
				ds.note(nil)
			}
			return conn, nil
		}
		err = unwrapOpError(err)
		if ds != nil {
			ds.note(err)
		}
		if !daemonStarting(err) || time.Now().Add(pause).After(deadline) {
			return nil, &UnreachableError{Socket: c.socket, Err: err}
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &UnreachableError{Socket: c.socket, Err: err}
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// daemonStarting reports a dial error that a daemon starting up gives: no
// socket yet, or a socket file nobody listens on yet (a previous daemon's,
// which the new one replaces), or a full listen queue.
func daemonStarting(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EAGAIN)
}

// bound runs call under the client's Timeout (or d when d > 0). A call
// that ends because the bound passed is a *NoAnswerError, or an
// *UnreachableError when it never got a connection.
func (c *Client) bound(ctx context.Context, d time.Duration, call func(ctx context.Context) error) error {
	if d <= 0 {
		d = c.opts.Timeout
	}
	if d <= 0 {
		return call(ctx)
	}
	ds := &dialState{}
	bctx, cancel := context.WithTimeout(context.WithValue(ctx, dialStateKey{}, ds), d)
	defer cancel()
	err := call(bctx)
	if err == nil || bctx.Err() == nil || ctx.Err() != nil {
		return err
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return ue
	}
	if derr := ds.unreachable(); derr != nil {
		return &UnreachableError{Socket: c.socket, Err: derr}
	}
	return &NoAnswerError{Socket: c.socket, After: d}
}

// writeBound is how long a write may take: a write that waits for
// acknowledgements gets its wait plus WriteMargin (at least the client's
// Timeout), since the caller said how long the daemon may wait.
func (c *Client) writeBound(opts WriteOptions) time.Duration {
	wait := time.Duration(opts.Timeout)
	if wait <= 0 && opts.Wait > 0 {
		wait = DefaultWaitTimeout
	}
	switch {
	case wait <= 0:
		return c.opts.Timeout
	case opts.Timeout > 0:
		return wait + WriteMargin
	case c.opts.Timeout <= 0:
		return 0
	}
	return max(c.opts.Timeout, wait+WriteMargin)
}

// unwrapOpError drops the "dial unix PATH:" part of a dial error, since
// UnreachableError names the socket already.
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Socket is the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// Close drops idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	c.streams.CloseIdleConnections()
	return nil
}

// keyPath escapes key for /v1/kv/{key}: each "/"-separated segment with
// url.PathEscape, so the server decodes exactly the key's bytes ("%", "?",
// "#", spaces, "..") while the slashes stay readable in logs.
func keyPath(key string) string {
	if !strings.ContainsFunc(key, needsEscape) {
		return "/v1/kv/" + key
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
		// PathEscape leaves "." and ".." alone; escape them so no proxy
		// or library between us and the server can resolve them.
		if s == "." || s == ".." {
			segs[i] = strings.ReplaceAll(s, ".", "%2E")
		}
	}
	return "/v1/kv/" + strings.Join(segs, "/")
}

// needsEscape reports a character keyPath must look at: anything but
// letters, digits, "/", "-" and "_" (a "." may be a "." segment).
func needsEscape(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '-' || r == '_')
}

// do sends a request and returns the answer if it is a 2xx; otherwise the
// answer's *Error, or an *UnreachableError when the daemon could not be
// reached.
//
// A body is sent with contentType; the transport streams a body that is
// not a bytes or strings reader, chunk by chunk, without reading it all.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType ...string) (*http.Response, error) {
	u := baseURL + path
	if len(q) > 0 {
		u += "?" + encodeQuery(q)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if len(contentType) > 0 {
		req.Header.Set("Content-Type", contentType[0])
	}
	resp, err := c.httpClient(path).Do(req)
	if err != nil {
		var (
			ue *UnreachableError
			te *UntrustedServerError
			ne net.Error
		)
		if errors.As(err, &ue) {
			return nil, ue
		}
		if errors.As(err, &te) {
			return nil, te
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.As(err, &ne) && ne.Timeout() && c.opts.Timeout > 0 {
			return nil, &NoAnswerError{Socket: c.socket, After: c.opts.Timeout} // ResponseHeaderTimeout
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, unwrapURLError(err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// encodeQuery is url.Values.Encode, except that flags (an empty value)
// are written bare: "?raw" rather than "?raw=".
func encodeQuery(q url.Values) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			if v != "" {
				b.WriteByte('=')
				b.WriteString(url.QueryEscape(v))
			}
		}
	}
	return b.String()
}

// readError rebuilds the *Error of a non-2xx answer.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		e.retryAfter = time.Duration(secs) * time.Second
	}
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		// Not one of ours (a proxy, an old daemon): keep what it said.
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
		e.Message = strings.TrimSpace(string(b))
		if e.Message == "" {
			e.Message = resp.Status
		}
	}
	if e.Message == "" {
		if base := errorForCode(e.Code); base != nil {
			e.Message = base.Message
		}
	}
	return e
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// Get returns key's record, and how the read was answered.
func (c *Client) Get(ctx context.Context, key string, opts GetOptions) (g GetResponse, info ReadInfo, err error) {
	err = c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodGet, keyPath(key), getQuery(opts.Fresh, false), nil)
		if err != nil {
			return err
		}
		info = readInfo(resp)
		return decodeJSON(resp, &g)
	})
	return g, info, err
}

// GetRaw returns key's value bytes and version, without the JSON.
func (c *Client) GetRaw(ctx context.Context, key string, fresh bool) (value []byte, version uint64, info ReadInfo, err error) {
	err = c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodGet, keyPath(key), getQuery(fresh, true), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		info = readInfo(resp)
		if version, err = strconv.ParseUint(resp.Header.Get("Ck-Version"), 10, 64); err != nil {
			return fmt.Errorf("bad Ck-Version header %q", resp.Header.Get("Ck-Version"))
		}
		if value, err = io.ReadAll(resp.Body); err != nil {
			return fmt.Errorf("reading the value: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, info, err
	}
	return value, version, info, nil
}

func getQuery(fresh, raw bool) url.Values {
	q := url.Values{}
	if fresh {
		q.Set("fresh", "")
	}
	if raw {
		q.Set("raw", "")
	}
	return q
}

func readInfo(resp *http.Response) ReadInfo {
	var info ReadInfo
	if a := resp.Header.Get("Ck-Answered"); a != "" {
		info.Fresh = true
		info.Answered, _ = strconv.Atoi(a)
		info.Alive, _ = strconv.Atoi(resp.Header.Get("Ck-Alive"))
		info.Asked, _ = strconv.Atoi(resp.Header.Get("Ck-Asked")) // absent from an older daemon: 0
	}
	info.Syncing = resp.Header.Get("Ck-Syncing") == "true"
	return info
}

// Put stores value under key and returns the stored record. With
// opts.Wait, a shortfall of acknowledgements is an *Error matching
// ErrWaitTimeout (the value is stored) with Acked and Wanted set.
//
// A write the daemon turns away busy (ErrBusy: too many request bodies or
// connections at once) is sent again after a short pause, for up to
// BusyRetryFor; then the busy error is returned.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts WriteOptions) (rec Record, err error) {
	err = c.bound(ctx, c.writeBound(opts), func(ctx context.Context) error {
		rec, err = c.retryBusy(ctx, func() (Record, error) {
			return c.write(ctx, http.MethodPut, key, bytes.NewReader(value), opts)
		})
		return err
	})
	return rec, err
}

// Delete deletes key (a tombstone). Deleting a missing key succeeds. It is
// sent again when the daemon is busy, as Put is.
func (c *Client) Delete(ctx context.Context, key string, opts WriteOptions) (rec Record, err error) {
	err = c.bound(ctx, c.writeBound(opts), func(ctx context.Context) error {
		rec, err = c.retryBusy(ctx, func() (Record, error) {
			return c.write(ctx, http.MethodDelete, key, nil, opts)
		})
		return err
	})
	return rec, err
}

// BusyRetryFor is how long Put and Delete keep resending a write the
// daemon answered busy.
const BusyRetryFor = 5 * time.Second

// retryBusy calls send until it is not answered busy or BusyRetryFor has
// passed, pausing between calls a random time up to the answer's
// Retry-After (at most a second), so that many clients turned away at
// once do not all come back at once.
func (c *Client) retryBusy(ctx context.Context, send func() (Record, error)) (Record, error) {
	deadline := time.Now().Add(BusyRetryFor)
	for {
		rec, err := send()
		var e *Error
		if !errors.As(err, &e) || e.Code != ErrBusy.Code {
			return rec, err
		}
		pause := min(max(e.retryAfter, 100*time.Millisecond), time.Second)
		pause = 20*time.Millisecond + rand.N(pause)
		if time.Now().Add(pause).After(deadline) {
			return rec, err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return rec, ctx.Err()
		}
	}
}

func (c *Client) write(ctx context.Context, method, key string, body io.Reader, opts WriteOptions) (Record, error) {
	q := url.Values{}
	if opts.IfVersion != nil {
		q.Set("if_version", strconv.FormatUint(*opts.IfVersion, 10))
	}
	if opts.Wait != 0 {
		q.Set("wait", strconv.Itoa(opts.Wait))
	}
	if opts.Timeout != 0 {
		q.Set("timeout", time.Duration(opts.Timeout).String())
	}
	if opts.TTL != 0 {
		q.Set("ttl", time.Duration(opts.TTL).String())
	}
	if opts.Ephemeral {
		q.Set("ephemeral", "")
	}
	var ctype []string
	if body != nil {
		ctype = append(ctype, "application/octet-stream")
	}
	var rec Record
	resp, err := c.do(ctx, method, keyPath(key), q, body, ctype...)
	if err != nil {
		return rec, err
	}
	err = decodeJSON(resp, &rec)
	return rec, err
}

// List returns one page of live records in key order.
func (c *Client) List(ctx context.Context, opts ListOptions) (ListResponse, error) {
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.After != "" {
		q.Set("after", opts.After)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Values {
		q.Set("values", "")
	}
	var lr ListResponse
	err := c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodGet, "/v1/kv", q, nil)
		if err != nil {
			return err
		}
		err = decodeJSON(resp, &lr)
		lr.Syncing = resp.Header.Get("Ck-Syncing") == "true"
		return err
	})
	return lr, err
}

// ListAll calls fn with every live record with the prefix, in key order,
// following the pages. An error from fn ends it and is returned.
func (c *Client) ListAll(ctx context.Context, prefix string, values bool, fn func(Record) error) error {
	_, err := c.ListAllInfo(ctx, prefix, values, fn)
	return err
}

// ListAllInfo is ListAll, and says whether the node was still
// bootstrapping while it listed (info.Syncing): the listing may then lack
// records the cluster holds.
func (c *Client) ListAllInfo(ctx context.Context, prefix string, values bool, fn func(Record) error) (info ReadInfo, err error) {
	opts := ListOptions{Prefix: prefix, Values: values}
	for {
		page, err := c.List(ctx, opts)
		if err != nil {
			return info, err
		}
		info.Syncing = info.Syncing || page.Syncing
		for _, r := range page.Items {
			if err := fn(r); err != nil {
				return info, err
			}
		}
		if page.Next == "" {
			return info, nil
		}
		if page.Next <= opts.After && opts.After != "" {
			return info, fmt.Errorf("list: the daemon's page cursor went backwards (%q after %q)", page.Next, opts.After)
		}
		opts.After = page.Next
	}
}

// Members returns the member table, this node included.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var m []Member
	return m, c.getJSON(ctx, "/v1/members", &m)
}

// Status describes the node.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.getJSON(ctx, "/v1/status", &s)
}

// Health is nil when the node serves and has bootstrapped; else an *Error
// matching ErrSyncing, ErrShuttingDown or ErrDiskFull.
func (c *Client) Health(ctx context.Context) error {
	var h Health
	return c.getJSON(ctx, "/v1/health", &h)
}

// Reload asks the daemon to re-read its reloadable configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodPost, "/v1/reload", nil, nil)
		if err != nil {
			return err
		}
		var h Health
		return decodeJSON(resp, &h)
	})
}

// Metrics returns the daemon's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var b []byte
	err := c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodGet, "/v1/metrics", nil, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err = io.ReadAll(resp.Body)
		return err
	})
	return string(b), err
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	return c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			return err
		}
		return decodeJSON(resp, v)
	})
}

// isErrorLine reports whether a stream line is the server's closing
// {"error","code"} line rather than an event or a record.
func isErrorLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte(`{"error":`))
}

func lineError(line []byte) error {
	e := &Error{}
	if err := json.Unmarshal(line, e); err != nil || e.Code == "" {
		return fmt.Errorf("bad error line in the stream: %q", line)
	}
	if base := errorForCode(e.Code); base != nil {
		e.Status = base.Status
	}
	return e
}

// Watch calls fn with every change whose key has the prefix: with since
// nil from now on, else those with an index above *since first. It runs
// until ctx ends (returning ctx's error), fn returns an error (returned),
// or the daemon ends the stream (an *Error, for example ErrShuttingDown).
// A since older than the daemon's log is ErrCompacted.
func (c *Client) Watch(ctx context.Context, prefix string, since *uint64, fn func(Event) error) error {
	return c.WatchWith(ctx, WatchOptions{Prefix: prefix, Since: since}, fn)
}

// WatchOptions are the parameters of WatchWith.
type WatchOptions struct {
	Prefix string
	Since  *uint64 // nil: from now on
	// Started, when set, is called once the daemon has taken the watch,
	// before any event, with the index of the daemon's last change at
	// that moment (the header Ck-Index; ok is false when the daemon does
	// not send it). A watch from now reports the changes above it, so a
	// client that resumes from it after losing the stream misses nothing.
	// An error from Started ends the watch and is returned.
	Started func(last uint64, ok bool) error
}

// WatchWith is Watch with every option.
func (c *Client) WatchWith(ctx context.Context, opts WatchOptions, fn func(Event) error) error {
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Since != nil {
		q.Set("since", strconv.FormatUint(*opts.Since, 10))
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/watch", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if opts.Started != nil {
		last, perr := strconv.ParseUint(resp.Header.Get("Ck-Index"), 10, 64)
		if err := opts.Started(last, perr == nil); err != nil {
			return err
		}
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if isErrorLine(line) {
				return lineError(line)
			}
			var ev Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return fmt.Errorf("watch: bad event line %q: %w", line, jerr)
			}
			if ferr := fn(ev); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return fmt.Errorf("watch: the daemon ended the stream: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("watch: %w", err)
		}
	}
}

// Export writes the records whose key has the prefix to w, one JSON line
// each, versions kept (tombstones included), as Import reads them.
func (c *Client) Export(ctx context.Context, prefix string, w io.Writer) error {
	_, err := c.ExportInfo(ctx, prefix, w)
	return err
}

// ExportInfo is Export, and says whether the node was still bootstrapping
// (info.Syncing): the export may then lack records the cluster holds.
func (c *Client) ExportInfo(ctx context.Context, prefix string, w io.Writer) (ReadInfo, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/export", q, nil)
	if err != nil {
		return ReadInfo{}, err
	}
	defer resp.Body.Close()
	info := ReadInfo{Syncing: resp.Header.Get("Ck-Syncing") == "true"}
	return info, copyExport(ctx, resp.Body, w)
}

// copyExport copies an export stream's record lines to w.
func copyExport(ctx context.Context, body io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if isErrorLine(line) {
				return lineError(line)
			}
			if err == nil { // a line cut short is not written
				if _, werr := w.Write(line); werr != nil {
					return werr
				}
			}
		}
		switch {
		case err == io.EOF && len(line) == 0:
			return nil
		case err == io.EOF:
			return fmt.Errorf("export: the stream ended inside a line: %w", io.ErrUnexpectedEOF)
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("export: %w", err)
		}
	}
}

// Import sends r, JSON lines of records as Export writes them, to be
// applied like received records (a restore), or with asNew as new local
// writes through on_set. r is streamed, not read into memory.
func (c *Client) Import(ctx context.Context, r io.Reader, asNew bool) (ImportResult, error) {
	q := url.Values{}
	if asNew {
		q.Set("as_new", "")
	}
	var res ImportResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/import", q, r, ndjson)
	if err != nil {
		return res, err
	}
	err = decodeJSON(resp, &res)
	return res, err
}
