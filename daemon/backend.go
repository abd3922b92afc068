package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/scripting"
	"github.com/cloudknowledge/ck/store"
)

// backend is the daemon as the API server sees it (rpc.Backend). It keeps
// the translation between API and store types, and between their errors,
// in one place.
type backend struct{ d *Daemon }

var (
	_ rpc.Backend       = backend{}
	_ rpc.Bootstrapper  = backend{}
	_ rpc.ChangeIndexer = backend{}
)

// maxListLimit caps one page of a listing.
const maxListLimit = 10000

func (b backend) Get(ctx context.Context, key string, opts rpc.GetOptions) (rpc.Record, rpc.ReadInfo, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.Record{}, rpc.ReadInfo{}, err
	}
	defer release()
	info := rpc.ReadInfo{Fresh: opts.Fresh, Syncing: inst.node.Bootstrapping()}
	if err := store.ValidateKey(key); err != nil {
		return rpc.Record{}, info, apiError(err)
	}
	var rec store.Record
	var found bool
	if !opts.Fresh {
		rec, found, err = inst.store.Get(key)
	}
	// A joining node does not hold everything yet: what it lacks, it asks
	// its peers for rather than answer "not found" (docs/ARCHITECTURE.md,
	// "A joining node").
	fallback := !opts.Fresh && err == nil && !found && info.Syncing
	if opts.Fresh || fallback {
		var res cluster.FreshResult
		// A joining node's miss is only an answer once a peer has given
		// one: a fresh read that no alive peer answered in time (a loaded
		// peer, a lost datagram) is asked again, twice, and then the
		// client is told the node does not know yet, never "not found".
		// With no peer alive there is no one to ask: the miss stands.
		for try := 0; ; try++ {
			start := time.Now()
			res, err = inst.node.FreshGet(ctx, key, 0)
			since(b.d.metrics.fresh, start)
			if err != nil || !fallback || res.Answered > 1 || res.Alive == 1 || try == 2 {
				break
			}
		}
		rec, found, info.Answered, info.Alive, info.Asked = res.Record, res.Found, res.Answered, res.Alive, res.Asked
		info.Fresh = true
		if err == nil && fallback && res.Answered == 1 && res.Alive > 1 && !found { // both count this node
			return rpc.Record{}, info, rpc.Errorf(rpc.ErrSyncing,
				"this node is still bootstrapping and no peer answered for %q: try again", key)
		}
	}
	if err != nil {
		return rpc.Record{}, info, apiError(err)
	}
	if !found || rec.Deleted {
		return rpc.Record{}, info, rpc.Errorf(rpc.ErrNotFound, "key %q not found", key)
	}
	b.d.metrics.reads.Inc()
	out := toRPC(rec, true)
	out.Value, err = b.d.hooks.onGet(ctx, key, rec.Value, b.meta("get", rec.Lamport))
	if err != nil {
		return rpc.Record{}, info, err
	}
	return out, info, nil
}

func (b backend) Put(ctx context.Context, key string, value []byte, opts rpc.WriteOptions) (rpc.Record, error) {
	return b.writeAndWait(ctx, key, value, false, opts)
}

func (b backend) Delete(ctx context.Context, key string, opts rpc.WriteOptions) (rpc.Record, error) {
	return b.writeAndWait(ctx, key, nil, true, opts)
}

// writeAndWait is an API write. It is entered (Daemon.enter) and counted
// in flight only for the commit: the wait for peers (--wait) that follows
// holds nothing a rejoin or shutdown waits for, and either cuts it short
// (waitContext).
func (b backend) writeAndWait(ctx context.Context, key string, value []byte, del bool, opts rpc.WriteOptions) (rpc.Record, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.Record{}, err
	}
	ctx = cluster.Overlap(ctx, opts.Wait) // sent while it commits (docs/ARCHITECTURE.md, "Overlapped replication")
	rec, err := b.write(ctx, inst, key, value, del, opts)
	release()
	if err != nil {
		return rpc.Record{}, err
	}
	if opts.Wait > 0 {
		err = b.replicateWait(ctx, inst, rec, opts)
	}
	return toRPC(rec, true), err
}

// write is the path of every local write (API, import --as-new): key and
// size checks, on_set, the durable commit, and the replication that is not
// waited for (the caller waits for a --wait). The caller holds inst
// (Daemon.enter).
func (b backend) write(ctx context.Context, inst *instance, key string, value []byte, del bool, opts rpc.WriteOptions) (store.Record, error) {
	if err := b.d.beginWrite(); err != nil {
		return store.Record{}, err
	}
	defer b.d.writes.Done()
	op := "set"
	if del {
		op = "del"
	}
	if err := store.ValidateKey(key); err != nil {
		return store.Record{}, b.d.metrics.writeFailed(op, apiError(err))
	}
	if len(value) > b.d.cfg.MaxValueSize {
		return store.Record{}, b.d.metrics.writeFailed(op, rpc.Errorf(rpc.ErrTooLarge,
			"value of %d bytes is over max_value_size (%d)", len(value), b.d.cfg.MaxValueSize))
	}
	var rec store.Record
	var err error
	so := store.SetOptions{IfVersion: opts.IfVersion, TTL: time.Duration(opts.TTL), Ephemeral: opts.Ephemeral}
	if del && (so.TTL != 0 || so.Ephemeral) {
		return store.Record{}, b.d.metrics.writeFailed(op, rpc.Errorf(rpc.ErrBadRequest, "a delete takes no ttl and is not ephemeral"))
	}
	if b.d.hooks.hasOnSet(key) {
		rec, err = b.hookedWrite(ctx, inst, key, value, del, op, so)
	} else {
		rec, err = b.commit(ctx, inst, key, value, del, so)
	}
	if err != nil {
		return store.Record{}, b.d.metrics.writeFailed(op, err)
	}
	b.d.metrics.writes.WithLabelValues(op).Inc()
	if opts.Wait <= 0 {
		inst.node.ReplicateAfter(ctx, rec)
	}
	return rec, nil
}

// hookedWriteTries bounds how often a write runs its on_set hook again
// because the key changed while the hook ran.
const hookedWriteTries = 16

// hookedWrite runs on_set and commits its result only if the key still
// holds the very record the hook looked at (by this node's writes or by
// replicated ones), running the hook again if not: so an on_set that
// reads the key (ck.get) and derives the new value from it — a counter's
// increment — never loses a concurrent update (docs/ARCHITECTURE.md, "Lua
// hooks"). The condition is the record itself (store.SetOptions.IfSame),
// not its version: a received record can replace the one read with
// another of the same version. With the client's own --if-version the
// first version mismatch is the answer.
func (b backend) hookedWrite(ctx context.Context, inst *instance, key string, value []byte, del bool, op string, so store.SetOptions) (store.Record, error) {
	ifVersion := so.IfVersion
	for range hookedWriteTries {
		cur, found, err := inst.store.Get(key)
		if err != nil {
			return store.Record{}, apiError(err)
		}
		seen := uint64(0) // the version as a condition sees it: 0 is absent or deleted
		if found && !cur.Deleted {
			seen = cur.Lamport
		}
		meta := b.meta(op, cur.Lamport)
		meta.TTL, meta.Ephemeral = so.TTL.Seconds(), so.Ephemeral
		out, err := b.d.hooks.onSet(ctx, key, value, meta)
		if err != nil {
			return store.Record{}, err
		}
		if len(out) > b.d.cfg.MaxValueSize { // a hook may grow the value
			return store.Record{}, rpc.Errorf(rpc.ErrTooLarge,
				"value of %d bytes from on_set is over max_value_size (%d)", len(out), b.d.cfg.MaxValueSize)
		}
		so.IfVersion = ifVersion
		if so.IfVersion == nil {
			so.IfVersion = &seen
		}
		so.IfSame = nil
		if found {
			h := cur.Hash()
			so.IfSame = &h
		}
		rec, err := b.commit(ctx, inst, key, out, del, so)
		switch {
		case errors.Is(err, store.ErrChanged):
			b.d.log.Debug("key changed while its on_set hook ran; running it again", "key", key, "version", cur.Lamport)
		case ifVersion == nil && errors.Is(err, rpc.ErrVersionMismatch):
		default:
			return rec, err
		}
	}
	return store.Record{}, rpc.Errorf(rpc.ErrVersionMismatch,
		"%q changed %d times while its on_set hook ran: try again", key, hookedWriteTries)
}

// commit stores a local write, with the client's (or hookedWrite's)
// condition.
func (b backend) commit(ctx context.Context, inst *instance, key string, value []byte, del bool, so store.SetOptions) (store.Record, error) {
	var rec store.Record
	var err error
	start := time.Now()
	if del {
		rec, err = inst.store.DeleteWith(ctx, key, so)
	} else {
		rec, err = inst.store.SetWith(ctx, key, value, so)
	}
	if err == nil {
		since(b.d.metrics.commit, start)
	}
	return rec, apiError(err)
}

// defaultWaitTimeout bounds --wait when no --timeout is given.
const defaultWaitTimeout = 5 * time.Second

// replicateWait sends the write to inst's peers and waits for opts.Wait
// of them to hold it durably. With fewer alive peers than asked it
// reports the shortfall at once (docs/PROTOCOL.md, Replication); a rejoin or shutdown cuts
// the wait short, reported as a shortfall too.
func (b backend) replicateWait(ctx context.Context, inst *instance, rec store.Record, opts rpc.WriteOptions) error {
	node := inst.node
	timeout := time.Duration(opts.Timeout)
	if timeout <= 0 {
		timeout = defaultWaitTimeout
	}
	wctx, cancel := waitContext(ctx, inst)
	defer cancel()
	start := time.Now()
	acked, err := node.ReplicateWait(wctx, rec, opts.Wait, timeout)
	if err == nil {
		since(b.d.metrics.ack, start)
		return nil
	}
	why := "within " + timeout.String()
	switch cause := context.Cause(wctx); {
	case errors.Is(err, cluster.ErrTooFewPeers):
		why = fmt.Sprintf("only %d peers are alive", node.AlivePeers())
	case ctx.Err() == nil && cause != nil && !errors.Is(cause, context.DeadlineExceeded):
		why = "the wait was cut short: " + cause.Error()
	}
	e := rpc.Errorf(rpc.ErrWaitTimeout, "stored, but only %d of %d peers acknowledged (%s)", acked, opts.Wait, why)
	e.Acked, e.Wanted = acked, opts.Wait
	return e
}

func (b backend) List(ctx context.Context, opts rpc.ListOptions) (rpc.ListResponse, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.ListResponse{}, err
	}
	defer release()
	limit := opts.Limit
	if limit <= 0 || limit > maxListLimit {
		limit = 1000
	}
	recs, next, err := inst.store.List(opts.Prefix, opts.After, limit, opts.Values)
	if err != nil {
		return rpc.ListResponse{}, apiError(err)
	}
	out := rpc.ListResponse{Items: make([]rpc.Record, 0, len(recs)), Next: next}
	for _, r := range recs {
		item := toRPC(r, opts.Values)
		if opts.Values {
			if item.Value, err = b.d.hooks.onGet(ctx, r.Key, r.Value, b.meta("get", r.Lamport)); err != nil {
				return rpc.ListResponse{}, err
			}
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

// Bootstrapping tells the API server that lists and exports may be
// incomplete (rpc.Bootstrapper).
func (b backend) Bootstrapping() bool {
	inst, release, err := b.d.enter()
	if err != nil {
		return false
	}
	defer release()
	return inst.node.Bootstrapping()
}

func (b backend) Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(rpc.Event) error) error {
	inst, release, err := b.d.enter()
	if err != nil {
		return err
	}
	defer release()
	err = inst.store.Watch(ctx, prefix, since, fromNow, func(e store.Event) error {
		return fn(rpc.Event{Index: e.Index, Op: string(e.Op), Key: e.Key, Version: e.Version, Origin: e.Origin.String()})
	})
	return b.d.ended(apiError(err))
}

// ChangeIndex implements rpc.ChangeIndexer: a watch says where it starts,
// so ckctl watch resumes after a restart without a gap.
func (b backend) ChangeIndex(context.Context) (uint64, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return 0, err
	}
	defer release()
	return inst.store.LastIndex(), nil
}

func (b backend) Export(ctx context.Context, prefix string, fn func(rpc.Record) error) error {
	inst, release, err := b.d.enter()
	if err != nil {
		return err
	}
	defer release()
	return b.d.ended(apiError(inst.store.Scan(prefix, func(r store.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(toRPC(r, true))
	})))
}

// ended says why a stream ended when a rejoin closed the store under it.
func (d *Daemon) ended(err error) error {
	if errors.Is(err, rpc.ErrShuttingDown) && d.rejoining.Load() && !d.stopping.Load() {
		return errRejoining
	}
	return err
}

func (b backend) Members(context.Context) ([]rpc.Member, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	now := time.Now()
	var out []rpc.Member
	for _, m := range inst.node.Members() {
		out = append(out, memberRow(m, now))
	}
	return out, nil
}

func memberRow(m cluster.Member, now time.Time) rpc.Member {
	rm := rpc.Member{
		ID: m.ID.String(), Name: m.Name, Addr: m.Addr.String(), State: string(m.State),
		Keys: m.Keys, Lamport: m.Lamport, Self: m.Self,
	}
	if !m.Self {
		rm.LastHeardMS = now.Sub(m.LastHeard).Milliseconds()
	}
	return rm
}

// Trust lifts a quarantined peer's quarantine (ckctl members trust ID):
// an unknown id is not_found, a peer that is not quarantined bad_request.
func (b backend) Trust(ctx context.Context, id string) (rpc.Member, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.Member{}, err
	}
	defer release()
	nid, err := store.ParseNodeID(id)
	if err != nil {
		return rpc.Member{}, rpc.Errorf(rpc.ErrBadRequest, "%v", err)
	}
	if nid == inst.store.NodeID() {
		return rpc.Member{}, rpc.Errorf(rpc.ErrBadRequest, "%s is this node: trust it on the peer that quarantines it", id)
	}
	switch err := inst.node.Trust(nid); {
	case errors.Is(err, cluster.ErrUnknownPeer):
		return rpc.Member{}, rpc.Errorf(rpc.ErrNotFound, "no peer %s: this node has never heard of it", id)
	case errors.Is(err, cluster.ErrNotQuarantined):
		return rpc.Member{}, rpc.Errorf(rpc.ErrBadRequest, "peer %s is not quarantined: nothing to trust", id)
	case err != nil:
		return rpc.Member{}, err
	}
	now := time.Now()
	for _, m := range inst.node.Members() {
		if m.ID == nid {
			return memberRow(m, now), nil
		}
	}
	return rpc.Member{ID: id, State: string(cluster.Gone)}, nil // remembered, not heard since start
}

func (b backend) Rejoin(ctx context.Context) (rpc.RejoinResult, error) { return b.d.Rejoin(ctx) }

func (b backend) Status(context.Context) (rpc.Status, error) {
	inst, release, err := b.d.enter()
	if err != nil {
		return rpc.Status{}, err
	}
	defer release()
	d := b.d
	digest := "counting" // after a crash, until the records are counted; keys: those counted so far
	if !inst.store.Counting() {
		root := inst.store.Root()
		digest = fmt.Sprintf("%x", root[:16])
	}
	return rpc.Status{
		ID:         inst.store.NodeID().String(),
		Name:       d.cfg.NodeName,
		Version:    rpc.Version,
		Lamport:    inst.store.Lamport(),
		Keys:       inst.store.Keys(),
		DigestRoot: digest,
		Transport:  d.cfg.Cluster.Transport,
		Address:    inst.node.Addr().String(),
		Members:    memberCounts(inst.node.Members()),
		Sync:       syncState(inst.node.Sync()),
		StoreID:    inst.store.StoreID().String(),
		NATS:       inst.natsState(),
		Disk:       inst.store.DiskState(),
		DataDir:    d.cfg.DataDir,
		Socket:     d.cfg.Socket,
		KeySource:  d.KeySource(),
		UptimeMS:   time.Since(d.started).Milliseconds(),
		Drops:      inst.datagramDrops(),
	}, nil
}

// datagramDrops is what the transport lost on this node's side.
func (inst *instance) datagramDrops() rpc.DatagramDrops {
	t := inst.transport.Stats()
	return rpc.DatagramDrops{Kernel: t.DroppedKernel, QueueFull: t.DroppedQueueFull, SendBuffer: t.SendDropped}
}

func (inst *instance) natsState() string {
	if inst.bridge == nil {
		return "off"
	}
	return inst.bridge.State()
}

func syncState(s cluster.SyncState) rpc.SyncState {
	return rpc.SyncState{State: s.State, Peer: s.PeerName, Received: s.Received}
}

func memberCounts(ms []cluster.Member) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[string(m.State)]++
	}
	return out
}

func (b backend) Health(context.Context) error {
	if b.d.stopping.Load() {
		return rpc.ErrShuttingDown
	}
	inst, release, err := b.d.enter()
	if err != nil {
		return err
	}
	defer release()
	if err := diskHealth(inst.store.DiskState()); err != nil {
		return err
	}
	if inst.node.Bootstrapping() {
		return rpc.ErrSyncing
	}
	return nil
}

// diskHealth is health's answer for a store a full disk limits: 503 with
// the code disk_full (not the 507 of a refused write: /v1/health answers
// 200 or 503), while writes that grow the store are refused or limited
// (docs/ARCHITECTURE.md, "A full disk").
func diskHealth(state string) error {
	var msg string
	switch state {
	case store.DiskFull:
		msg = "disk full: flushes fail; writes that grow the store are refused, deletes and smaller overwrites accepted"
	case store.DiskLow:
		msg = "disk full: no space reserve; writes that grow the store are limited, deletes and smaller overwrites accepted"
	default:
		return nil
	}
	e := rpc.Errorf(rpc.ErrDiskFull, "%s", msg)
	e.Status = http.StatusServiceUnavailable
	return e
}

func (b backend) Reload(ctx context.Context) error {
	_, release, err := b.d.enter()
	if err != nil {
		return err
	}
	defer release()
	if err := b.d.Reload(ctx); err != nil {
		return rpc.Errorf(rpc.ErrBadRequest, "%v", err)
	}
	return nil
}

func (b backend) Metrics() http.Handler { return b.d.metrics.handler() }

func (b backend) meta(op string, version uint64) scripting.Meta {
	return scripting.Meta{Node: b.d.cfg.NodeName, Op: op, Version: version}
}

// apiError maps store errors onto the API's codes, keeping the message.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct {
		from error
		to   *rpc.Error
	}{
		{store.ErrBadKey, rpc.ErrBadRequest},
		{store.ErrBadRecord, rpc.ErrBadRequest},
		{store.ErrBadTTL, rpc.ErrBadRequest},
		{store.ErrTooLarge, rpc.ErrTooLarge},
		{store.ErrVersionMismatch, rpc.ErrVersionMismatch},
		{store.ErrDiskFull, rpc.ErrDiskFull},
		{store.ErrCompacted, rpc.ErrCompacted},
		{store.ErrClosed, rpc.ErrShuttingDown},
	} {
		if errors.Is(err, m.from) {
			return rpc.Errorf(m.to, "%s", err)
		}
	}
	return err
}
