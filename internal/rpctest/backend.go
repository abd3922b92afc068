// Package rpctest provides an in-memory rpc.Backend and a helper that
// serves it on a Unix socket, for tests of the rpc package and of its
// clients (ckctl). It imports nothing but rpc and the standard library.
package rpctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cloudknowledge/ck/rpc"
)

// SelfID is the fake node's id.
const SelfID = "0123456789abcdef0123456789abcdef"

// Backend is an in-memory rpc.Backend with knobs to provoke every error.
// Its exported fields may be set before the server starts, or under Lock.
type Backend struct {
	sync.Mutex

	// Peers is how many peers can acknowledge a write: a write waiting
	// for more fails with wait_timeout (stored, Acked = Peers).
	Peers int
	// Hook, when set, sees every Put and may rewrite the value or refuse
	// it (return an error wrapping rpc.ErrHookRejected, say).
	Hook func(key string, value []byte) ([]byte, error)
	// WriteErr, when set, refuses every write (rpc.ErrDiskFull, say).
	WriteErr error
	// HealthErr is what Health returns.
	HealthErr error
	// ReloadErr is what Reload returns; Reloads counts the calls.
	ReloadErr error
	Reloads   int
	// Syncing marks reads, lists and exports as answered while bootstrapping.
	Syncing bool
	// PageSize is List's default and largest page (default 100).
	PageSize int
	// CompactedBelow: watches asking for since < CompactedBelow fail
	// with rpc.ErrCompacted.
	CompactedBelow uint64
	// MembersList is what Members returns (nil: this node alone). Trust
	// turns a quarantined member of it alive.
	MembersList []rpc.Member
	// RejoinResult is what Rejoin returns, or RejoinErr; Rejoins counts
	// the calls.
	RejoinResult rpc.RejoinResult
	RejoinErr    error
	Rejoins      int

	lamport  uint64
	watching int // Watch calls running
	recs     map[string]rpc.Record
	log      []rpc.Event
	changed  chan struct{} // closed and replaced at every change
}

// NewBackend returns an empty backend.
func NewBackend() *Backend {
	return &Backend{recs: map[string]rpc.Record{}, changed: make(chan struct{})}
}

var (
	_ rpc.Backend       = (*Backend)(nil)
	_ rpc.Bootstrapper  = (*Backend)(nil)
	_ rpc.ChangeIndexer = (*Backend)(nil)
)

// ValidKey applies the key rules (docs/PROTOCOL.md, Data model).
func ValidKey(key string) error {
	switch {
	case key == "":
		return rpc.Errorf(rpc.ErrBadRequest, "empty key")
	case len(key) > 1024:
		return rpc.Errorf(rpc.ErrBadRequest, "key longer than 1024 bytes")
	case !utf8.ValidString(key):
		return rpc.Errorf(rpc.ErrBadRequest, "key %q is not UTF-8", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return rpc.Errorf(rpc.ErrBadRequest, "key %q holds a control character", key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return rpc.Errorf(rpc.ErrBadRequest, "key %q: empty, . or .. segment", key)
		}
	}
	return nil
}

// Record returns key's stored record (tombstones too), for tests.
func (b *Backend) Record(key string) (rpc.Record, bool) {
	b.Lock()
	defer b.Unlock()
	r, ok := b.recs[key]
	return r, ok
}

// Len is the number of live keys.
func (b *Backend) Len() int {
	b.Lock()
	defer b.Unlock()
	n := 0
	for _, r := range b.recs {
		if !r.Deleted {
			n++
		}
	}
	return n
}

// LastIndex is the index of the latest change.
func (b *Backend) LastIndex() uint64 {
	b.Lock()
	defer b.Unlock()
	return uint64(len(b.log))
}

// ChangeIndex implements rpc.ChangeIndexer.
func (b *Backend) ChangeIndex(context.Context) (uint64, error) { return b.LastIndex(), nil }

// store keeps r and logs it; b is locked.
func (b *Backend) store(r rpc.Record) {
	if r.Version > b.lamport {
		b.lamport = r.Version
	}
	b.recs[r.Key] = r
	op := "set"
	if r.Deleted {
		op = "del"
	}
	b.log = append(b.log, rpc.Event{Index: uint64(len(b.log)) + 1, Op: op, Key: r.Key, Version: r.Version, Origin: r.Origin})
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Backend) write(key string, value []byte, deleted bool, opts rpc.WriteOptions) (rpc.Record, error) {
	if err := ValidKey(key); err != nil {
		return rpc.Record{}, err
	}
	b.Lock()
	defer b.Unlock()
	if b.WriteErr != nil {
		return rpc.Record{}, b.WriteErr
	}
	cur, ok := b.recs[key]
	if opts.IfVersion != nil {
		have := cur.Version
		if !ok || cur.Deleted {
			have = 0
		}
		if have != *opts.IfVersion {
			return rpc.Record{}, rpc.Errorf(rpc.ErrVersionMismatch, "version mismatch: %s is at version %d, not %d", key, have, *opts.IfVersion)
		}
	}
	if !deleted && b.Hook != nil {
		v, err := b.Hook(key, value)
		if err != nil {
			return rpc.Record{}, err
		}
		value = v
	}
	b.lamport++
	r := rpc.Record{Key: key, Value: value, Version: b.lamport, Origin: SelfID,
		VV: map[string]uint64{SelfID: b.lamport}, Deleted: deleted,
		LWW: &rpc.Stamp{Lamport: b.lamport, Origin: SelfID}, At: 1700000000000}
	if deleted {
		r.Value = nil
	}
	b.store(r)
	if opts.Wait > b.Peers {
		e := rpc.Errorf(rpc.ErrWaitTimeout, "stored, but only %d of %d peers acknowledged", b.Peers, opts.Wait)
		e.Acked, e.Wanted = b.Peers, opts.Wait
		return r, e
	}
	return r, nil
}

// Get implements rpc.Backend.
func (b *Backend) Get(ctx context.Context, key string, opts rpc.GetOptions) (rpc.Record, rpc.ReadInfo, error) {
	if err := ValidKey(key); err != nil {
		return rpc.Record{}, rpc.ReadInfo{}, err
	}
	b.Lock()
	defer b.Unlock()
	info := rpc.ReadInfo{Syncing: b.Syncing}
	if opts.Fresh {
		info.Fresh, info.Answered, info.Alive, info.Asked = true, b.Peers+1, b.Peers+1, b.Peers+1
	}
	r, ok := b.recs[key]
	if !ok || r.Deleted {
		return rpc.Record{}, info, rpc.Errorf(rpc.ErrNotFound, "key not found: %s", key)
	}
	return r, info, nil
}

// Put implements rpc.Backend.
func (b *Backend) Put(ctx context.Context, key string, value []byte, opts rpc.WriteOptions) (rpc.Record, error) {
	return b.write(key, value, false, opts)
}

// Delete implements rpc.Backend.
func (b *Backend) Delete(ctx context.Context, key string, opts rpc.WriteOptions) (rpc.Record, error) {
	return b.write(key, nil, true, opts)
}

// sortedLocked returns the records with the prefix in key order; b is locked.
func (b *Backend) sortedLocked(prefix string, tombstones bool) []rpc.Record {
	var out []rpc.Record
	for k, r := range b.recs {
		if strings.HasPrefix(k, prefix) && (tombstones || !r.Deleted) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b rpc.Record) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Bootstrapping implements rpc.Bootstrapper: it is Syncing.
func (b *Backend) Bootstrapping() bool {
	b.Lock()
	defer b.Unlock()
	return b.Syncing
}

// List implements rpc.Backend.
func (b *Backend) List(ctx context.Context, opts rpc.ListOptions) (rpc.ListResponse, error) {
	b.Lock()
	defer b.Unlock()
	size := b.PageSize
	if size <= 0 {
		size = 100
	}
	limit := opts.Limit
	if limit <= 0 || limit > size {
		limit = size
	}
	var resp rpc.ListResponse
	for _, r := range b.sortedLocked(opts.Prefix, false) {
		if r.Key <= opts.After {
			continue
		}
		if len(resp.Items) == limit {
			resp.Next = resp.Items[len(resp.Items)-1].Key
			break
		}
		if !opts.Values {
			r.Value = nil
		}
		resp.Items = append(resp.Items, r)
	}
	return resp, nil
}

// Watchers is how many watches are running, for tests that must know a
// watch has started before they write.
func (b *Backend) Watchers() int {
	b.Lock()
	defer b.Unlock()
	return b.watching
}

// Watch implements rpc.Backend.
func (b *Backend) Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(rpc.Event) error) error {
	b.Lock()
	b.watching++
	b.Unlock()
	defer func() {
		b.Lock()
		b.watching--
		b.Unlock()
	}()
	b.Lock()
	if !fromNow && since+1 < b.CompactedBelow {
		b.Unlock()
		return rpc.Errorf(rpc.ErrCompacted, "index %d is compacted; the log starts at %d", since, b.CompactedBelow)
	}
	next := since
	if fromNow {
		next = uint64(len(b.log))
	}
	b.Unlock()
	for {
		b.Lock()
		pending := slices.Clone(b.log[min(next, uint64(len(b.log))):])
		changed := b.changed
		b.Unlock()
		for _, ev := range pending {
			next = ev.Index
			if !strings.HasPrefix(ev.Key, prefix) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Export implements rpc.Backend.
func (b *Backend) Export(ctx context.Context, prefix string, fn func(rpc.Record) error) error {
	b.Lock()
	recs := b.sortedLocked(prefix, true)
	b.Unlock()
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Import implements rpc.Backend: a restore keeps a record unless the
// store holds one at least as new; asNew puts each value.
func (b *Backend) Import(ctx context.Context, asNew bool, next func() (rpc.Record, int, error)) (res rpc.ImportResult, err error) {
	var line int
	defer func() {
		if err != nil {
			res.Line = line
		}
	}()
	for {
		var r rpc.Record
		r, line, err = next()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("import: %w", err)
		}
		if asNew {
			if r.Deleted {
				_, err = b.Delete(ctx, r.Key, rpc.WriteOptions{})
			} else {
				_, err = b.Put(ctx, r.Key, r.Value, rpc.WriteOptions{})
			}
			if err != nil {
				return res, err
			}
			res.Records++
			res.Applied++
			continue
		}
		if err := ValidKey(r.Key); err != nil {
			return res, err
		}
		res.Records++
		b.Lock()
		if cur, ok := b.recs[r.Key]; !ok || cur.Version < r.Version {
			b.store(r)
			res.Applied++
		}
		b.Unlock()
	}
}

// Members implements rpc.Backend.
func (b *Backend) Members(ctx context.Context) ([]rpc.Member, error) {
	b.Lock()
	defer b.Unlock()
	if b.MembersList != nil {
		return slices.Clone(b.MembersList), nil
	}
	return []rpc.Member{{ID: SelfID, Name: "fake", Addr: "127.0.0.1:7946", State: "alive",
		Keys: uint64(len(b.recs)), Lamport: b.lamport, Self: true}}, nil
}

// Status implements rpc.Backend.
func (b *Backend) Status(ctx context.Context) (rpc.Status, error) {
	b.Lock()
	defer b.Unlock()
	sync := rpc.SyncState{State: "synced"}
	if b.Syncing {
		sync = rpc.SyncState{State: "bootstrapping", Peer: "fedcba9876543210fedcba9876543210", Received: 3}
	}
	return rpc.Status{ID: SelfID, Name: "fake", Version: rpc.Version, Lamport: b.lamport,
		Keys: uint64(len(b.recs)), DigestRoot: "00ff", Transport: "udp", Address: "127.0.0.1:7946",
		Members: map[string]int{"alive": 1}, Sync: sync, StoreID: "store-1", NATS: "off",
		DataDir: "/tmp/ck", Socket: "/tmp/ck/ckd.sock", UptimeMS: 1500}, nil
}

// Health implements rpc.Backend.
func (b *Backend) Health(ctx context.Context) error {
	b.Lock()
	defer b.Unlock()
	return b.HealthErr
}

// Reload implements rpc.Backend.
func (b *Backend) Reload(ctx context.Context) error {
	b.Lock()
	defer b.Unlock()
	b.Reloads++
	return b.ReloadErr
}

// Metrics implements rpc.Backend.
func (b *Backend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE ck_keys gauge\nck_keys %d\n", b.Len())
	})
}

// Trust implements rpc.Backend: a member of MembersList in state
// "quarantined" becomes "alive".
func (b *Backend) Trust(ctx context.Context, id string) (rpc.Member, error) {
	b.Lock()
	defer b.Unlock()
	for i, m := range b.MembersList {
		if m.ID != id {
			continue
		}
		if m.State != "quarantined" {
			return rpc.Member{}, rpc.Errorf(rpc.ErrBadRequest, "peer %s is not quarantined: nothing to trust", id)
		}
		b.MembersList[i].State = "alive"
		return b.MembersList[i], nil
	}
	return rpc.Member{}, rpc.Errorf(rpc.ErrNotFound, "no peer %s", id)
}

// Rejoin implements rpc.Backend.
func (b *Backend) Rejoin(ctx context.Context) (rpc.RejoinResult, error) {
	b.Lock()
	defer b.Unlock()
	b.Rejoins++
	return b.RejoinResult, b.RejoinErr
}
