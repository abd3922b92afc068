package rpc

import (
	"context"
	"net/http"
)

// Backend is what the server needs from the node. The daemon implements it.
//
// Every method may block (on the disk, on peers) and must return when ctx
// ends. Errors should be, or wrap, one of the *Error sentinels in errors.go
// so the server can answer with the right code and status; any other error
// becomes a 500 "internal". Byte slices handed to the backend (values) are
// the backend's to keep; records it returns are the server's.
type Backend interface {
	// Get returns the key's record. A missing key or a tombstone is
	// ErrNotFound. Hooks (on_get) have been applied to the value.
	Get(ctx context.Context, key string, opts GetOptions) (Record, ReadInfo, error)
	// Put stores value under key and returns the stored record.
	Put(ctx context.Context, key string, value []byte, opts WriteOptions) (Record, error)
	// Delete writes a tombstone and returns it. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string, opts WriteOptions) (Record, error)
	// List returns one page of live records in key byte order.
	List(ctx context.Context, opts ListOptions) (ListResponse, error)
	// Watch calls fn with every change with index > since whose key has the
	// prefix, first the logged ones then live ones, until ctx ends or fn
	// returns an error. since == 0 with live == true means "from now on".
	// A since older than the log holds is ErrCompacted, returned before fn
	// is first called.
	Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(Event) error) error
	// Export calls fn with every record (tombstones included) whose key has
	// the prefix, in key order, versions kept.
	Export(ctx context.Context, prefix string, fn func(Record) error) error
	// Import applies records like received ones (a restore, no on_set), or
	// with asNew as new local writes through on_set. next returns the next
	// record and its line in the body, or io.EOF at the end (an error
	// names its line, and returns it). Import returns what it imported,
	// also with an error, whose line it sets in the result (Line); it
	// applies nothing from that line on.
	Import(ctx context.Context, asNew bool, next func() (Record, int, error)) (ImportResult, error)
	Members(ctx context.Context) ([]Member, error)
	Status(ctx context.Context) (Status, error)
	// Health is nil when the node serves and has bootstrapped, else
	// ErrSyncing, ErrShuttingDown, or ErrDiskFull (with status 503).
	Health(ctx context.Context) error
	// Reload re-reads the reloadable configuration (hooks, keyring, log level).
	Reload(ctx context.Context) error
	// Trust lifts the quarantine of the peer with node id id (docs/PROTOCOL.md,
	// Long separations) and returns its member row: ErrNotFound for an id
	// the node has never heard of, ErrBadRequest for a peer that is not
	// quarantined.
	Trust(ctx context.Context, id string) (Member, error)
	// Rejoin moves this node's data aside, bootstraps from its peers and
	// re-applies its own writes made since it was last in sync. It may take
	// as long as a bootstrap; other calls answer ErrSyncing meanwhile.
	Rejoin(ctx context.Context) (RejoinResult, error)
	// Metrics serves the Prometheus text format.
	Metrics() http.Handler
}

// Bootstrapper is implemented by a Backend whose node may still be
// bootstrapping (pulling what it lacks from its peers). While
// Bootstrapping is true, list and export answers carry the header
// Ck-Syncing: true, for they show only what the node holds so far. It must
// not block.
type Bootstrapper interface {
	Bootstrapping() bool
}

// ChangeIndexer is implemented by a Backend that can tell the index of its
// last change. The server then answers a watch with the header Ck-Index,
// the last index when the watch started (a watch from now reports the
// changes above it), so that a client can resume the watch after losing
// the stream without missing or repeating an event. It must not block
// for long; its error is answered as any other.
type ChangeIndexer interface {
	ChangeIndex(ctx context.Context) (uint64, error)
}
