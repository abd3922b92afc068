package natsbridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// Source is what the bridge reads changes from: the node's store
// (*store.Store satisfies it). Watch may block until ctx ends and calls fn
// on the caller's goroutine; Get and LastIndex do not block for long.
type Source interface {
	// Watch calls fn for every change with index > since (store.Store.Watch).
	Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(store.Event) error) error
	// Get returns the key's current record (found false: absent or purged).
	Get(key string) (store.Record, bool, error)
	// NodeID is this node's id: the origin of its own writes.
	NodeID() store.NodeID
	// LastIndex is the index of the last committed change.
	LastIndex() uint64
}

// Writer is the daemon's write path, taken by inbound set and del
// messages: the API's (rpc.Backend satisfies it), so key checks, size
// limits, on_set hooks and replication apply exactly as for ckctl. It may
// block (disk, hooks, peers) and must return when ctx ends; errors should be
// *rpc.Error values, as for the API. The bridge hands over value and does
// not touch it again.
type Writer interface {
	Put(ctx context.Context, key string, value []byte, opts rpc.WriteOptions) (rpc.Record, error)
	Delete(ctx context.Context, key string, opts rpc.WriteOptions) (rpc.Record, error)
}

// The node's store and API backend are what the daemon hands over.
var (
	_ Source = (*store.Store)(nil)
	_ Writer = rpc.Backend(nil)
)

// Bridge connects one node to NATS: it publishes the node's changes and,
// with Subscribe, applies writes that arrive on NATS. Create it with New
// (which checks the config and loads credentials, but does not connect),
// then call Run once; State and Stats may be called at any time from any
// goroutine.
type Bridge struct {
	cfg  Config
	src  Source
	w    Writer
	log  hclog.Logger
	self store.NodeID
	opts []nats.Option

	kv string // "<prefix>.kv."

	started atomic.Bool
	stopped atomic.Bool
	conn    atomic.Pointer[nats.Conn]
	wake    chan struct{} // connection events and new messages wake the confirmer
	// failures counts failed connection attempts since the last success.
	failures      atomic.Uint64
	everConnected atomic.Bool  // nats.go has seen the server's INFO
	lastErrLog    atomic.Int64 // unix ns of the last async error logged

	out outbox // messages handed to NATS and not yet confirmed
	st  counters

	// The watcher's position and, once stopping, the index it must reach.
	cursor  atomic.Uint64
	stopSet atomic.Bool
	stopAt  atomic.Uint64

	inMu sync.RWMutex // inbound: held for reading while a message is queued
	in   *inbound
}

// New checks cfg, fills in its defaults and prepares the connection
// options (loading the credentials and TLS files). It does not connect:
// Run does, and keeps trying while NATS is unreachable. w may be nil when
// cfg.Subscribe is false.
func New(cfg Config, src Source, w Writer, log hclog.Logger) (*Bridge, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Subscribe && w == nil {
		return nil, fmt.Errorf("%w: subscribe needs a writer", ErrBadConfig)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	b := &Bridge{
		cfg: cfg, src: src, w: w, log: log, self: src.NodeID(),
		kv:   cfg.Prefix + ".kv.",
		wake: make(chan struct{}, 1),
	}
	if b.opts, err = b.options(); err != nil {
		return nil, err
	}
	// Publish every change committed from now on, even those committed
	// before Run gets going.
	b.cursor.Store(src.LastIndex())
	return b, nil
}

// Config returns the configuration in force, defaults filled in.
func (b *Bridge) Config() Config { return b.cfg }

// Run connects and bridges until ctx ends, then stops in order: inbound
// subscriptions are drained (queued writes finish and are answered), the
// watcher catches up with the changes committed before the stop, and the
// messages in flight are confirmed — each step bounded by DrainTimeout.
// Whatever is still unconfirmed then is counted as dropped. Run returns
// nil after a stop; an error only when it cannot start (it may be called
// once). NATS being unreachable is not an error: the bridge waits and
// retries, buffering up to BufferBytes.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer b.stopped.Store(true)
	nc, err := nats.Connect(strings.Join(b.cfg.URLs, ","), b.opts...)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	b.conn.Store(nc)
	defer nc.Close()
	b.log.Info("nats bridge started", "urls", redacted(b.cfg.URLs), "name", b.cfg.Name,
		"publish", b.cfg.Publish, "subscribe", b.cfg.Subscribe, "prefix", b.cfg.Prefix, "state", b.State())

	if b.cfg.Subscribe {
		if err := b.subscribe(nc); err != nil {
			return err
		}
	}
	var pub *publishing
	if b.cfg.Publish != PublishOff {
		pub = b.startPublishing(nc)
	}
	<-ctx.Done()
	if b.cfg.Subscribe {
		b.unsubscribe()
	}
	if pub != nil {
		pub.stop()
	}
	s := b.Stats()
	b.log.Info("nats bridge stopped", "published", s.Published, "dropped", s.Dropped,
		"received", s.Received, "errors", s.Errors)
	return nil
}

// State is the connection's state: "connecting" (not yet connected),
// "connected", "reconnecting", "disconnected", "draining" or "closed".
func (b *Bridge) State() string {
	nc := b.conn.Load()
	if nc == nil {
		if b.stopped.Load() {
			return "closed"
		}
		return "connecting"
	}
	switch nc.Status() {
	case nats.CONNECTED:
		return "connected"
	case nats.RECONNECTING:
		if b.st.connects.Load() == 0 {
			return "connecting"
		}
		return "reconnecting"
	case nats.CONNECTING:
		return "connecting"
	case nats.DISCONNECTED:
		return "disconnected"
	case nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return "draining"
	}
	return "closed"
}

// connEvent logs a connection event and wakes the confirmer.
func (b *Bridge) connEvent(what string, err error) {
	switch what {
	case "connected", "reconnected":
		b.st.connects.Add(1)
		b.failures.Store(0)
		url := ""
		if nc := b.conn.Load(); nc != nil {
			url = nc.ConnectedUrlRedacted()
		}
		b.log.Info("nats "+what, "url", url)
	case "disconnected":
		b.log.Warn("nats disconnected; reconnecting", "error", err)
	case "reconnect failed":
		// One line when an outage starts, then one every 150 attempts
		// (5 minutes at the default reconnect wait).
		if n := b.failures.Add(1); n == 1 || n%150 == 0 {
			b.log.Warn("nats unreachable; retrying", "attempts", n, "error", err)
		} else {
			b.log.Debug("nats reconnect failed", "attempts", n, "error", err)
		}
	default:
		b.log.Debug("nats " + what)
	}
	b.poke()
}

// asyncError records an error nats.go reports outside a call (slow
// consumer, permissions).
func (b *Bridge) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	n := b.st.errors.Add(1)
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	// A broken connection reports every failed write: one line a second.
	now, last := time.Now().UnixNano(), b.lastErrLog.Load()
	if now-last < int64(time.Second) || !b.lastErrLog.CompareAndSwap(last, now) {
		b.log.Debug("nats error", "subject", subj, "error", err)
		return
	}
	b.log.Warn("nats error", "subject", subj, "error", err, "errors_total", n)
}

func (b *Bridge) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// sleep waits for d, a poke or the end of ctx.
func (b *Bridge) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-b.wake:
	case <-t.C:
	}
}
