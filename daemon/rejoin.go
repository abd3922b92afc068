package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/internal/atomicfile"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// ownWritesFile, in the stale dir, holds the stale node's own writes made
// since it was last in sync, as export lines: what a rejoin re-applies,
// kept so that an interrupted rejoin can be finished by hand
// (ckctl import --as-new).
const ownWritesFile = "own-writes.jsonl"

// Rejoin settles a long separation on the stale side (`ckctl rejoin`;
// docs/PROTOCOL.md, Long separations): it stops the node, moves the store
// (and its peer book) aside to data_dir/stale-<UTC time>/, opens a fresh
// store, bootstraps it from the peers, and re-applies this node's own
// writes made since it was last in sync with any peer as new local writes.
// Meanwhile every other API call answers 503 syncing.
//
// The fresh store has a fresh node id: the peers remember the old id as
// long separated and would quarantine it again, and the old id's writes
// stay in the stale copy, which is never started again. Re-applied writes
// do not run on_set a second time (they ran it when first written), and
// one the cluster already holds (its record descends from it) is skipped.
//
// The work goes on if the caller goes away; it ends early only when the
// daemon stops, and then the own writes are still in the stale dir.
func (d *Daemon) Rejoin(_ context.Context) (rpc.RejoinResult, error) {
	var res rpc.RejoinResult
	if !d.rejoinMu.TryLock() {
		return res, rpc.Errorf(rpc.ErrSyncing, "a rejoin is already running")
	}
	defer d.rejoinMu.Unlock()
	if err := d.canRejoin(); err != nil {
		return res, err
	}
	ctx := d.life.ctx    // not the caller's: the work goes on if it goes away
	old := d.slot.peek() // only a rejoin or Close, both under rejoinMu, swap it
	cutoff := old.node.LatestInSync()
	res.OldID = old.store.NodeID().String()
	if !cutoff.IsZero() {
		res.LastInSync = cutoff.UTC().Format(time.RFC3339Nano)
	}
	stale, err := makeStaleDir(d.cfg.DataDir, time.Now())
	if err != nil {
		return res, fmt.Errorf("rejoin: %w", err)
	}
	res.StaleDir = stale
	d.writesMu.Lock()
	d.rejoining.Store(true)
	d.writesMu.Unlock()
	defer d.rejoining.Store(false)
	// Nothing a client does may hold the rejoin up: waits for ACKs and
	// streams (a watcher that reads nothing) are cut short; streams hold
	// the instance, which the swap waits for. Only commits are waited for.
	old.endWaits(errRejoining)
	if d.api != nil {
		d.api.EndStreams(errRejoining)
	}
	d.writes.Wait()
	d.log.Warn("rejoin: moving this node's data aside and starting afresh from the cluster",
		"id", res.OldID, "last_in_sync", res.LastInSync)

	inst, own, err := d.startAfresh(old, stale, cutoff)
	if err != nil {
		return res, err
	}
	res.NewID = inst.store.NodeID().String()
	d.log.Warn("rejoin: data moved aside; bootstrapping as a new node", "stale_dir", stale, "new_id", res.NewID, "own_writes", own)
	if err := awaitBootstrap(ctx, inst); err != nil {
		return res, d.interrupted(stale, err)
	}
	st := inst.node.Sync()
	res.Peer, res.Received = st.PeerName, st.Received
	if st.PeerName == "" {
		d.log.Error("rejoin: no peer answered the bootstrap; re-applying this node's own writes to an empty store", "stale_dir", stale)
	}
	res.Reapplied, res.Skipped, err = reapply(ctx, inst, filepath.Join(stale, ownWritesFile))
	if err != nil {
		return res, d.interrupted(stale, err)
	}
	d.log.Warn("rejoin complete", "stale_dir", stale, "new_id", res.NewID, "peer", res.Peer,
		"received", res.Received, "reapplied", res.Reapplied, "skipped", res.Skipped)
	return res, nil
}

// canRejoin refuses a rejoin the node cannot, or need not, do.
func (d *Daemon) canRejoin() error {
	switch {
	case d.stopping.Load():
		return rpc.ErrShuttingDown
	case !d.seesQuarantined():
		return rpc.Errorf(rpc.ErrBadRequest, "no peer is quarantined: there is no long separation to settle")
	}
	return nil
}

// seesQuarantined reports whether a member shows as quarantined now: one
// gone or left is no cluster to rejoin.
func (d *Daemon) seesQuarantined() bool {
	inst := d.slot.peek()
	if inst == nil {
		return false
	}
	for _, m := range inst.node.Members() {
		if m.State == cluster.Quarantined {
			return true
		}
	}
	return false
}

func (d *Daemon) interrupted(stale string, err error) error {
	own := filepath.Join(stale, ownWritesFile)
	d.log.Error("rejoin interrupted: this node's own writes since the separation are not all re-applied; "+
		"finish with ckctl import --as-new", "file", own, "error", err)
	return fmt.Errorf("rejoin interrupted (re-apply %s with ckctl import --as-new): %w", own, err)
}

// startAfresh stops the old instance, saves its own writes made after
// cutoff to the stale dir, moves the store and peer book there, and puts
// in the slot a running instance on a fresh store, which it returns with
// how many own writes it saved. If the fresh store cannot be opened it
// puts the old one back, and runs a new instance on that.
func (d *Daemon) startAfresh(old *instance, stale string, cutoff time.Time) (*instance, int, error) {
	old.stop(d.log) // says BYE: the peers see the old id leave; the bridge publishes what the old store holds
	own, err := saveOwnWrites(old.store, filepath.Join(stale, ownWritesFile), cutoff)
	if err != nil {
		err = fmt.Errorf("rejoin: saving this node's own writes: %w", err)
		_, rerr := d.restart(old.store, old.peers)
		return nil, 0, errors.Join(err, rerr)
	}
	d.slot.take()
	old.store.Close() // ends watches and exports: their calls release the instance
	old.users.Wait()
	moved, err := moveAside(d.cfg.DataDir, stale, d.storeFiles())
	var st *store.Store
	var peers *peerFile
	if err == nil {
		st, peers, err = d.openStore()
	}
	if err != nil {
		err = fmt.Errorf("rejoin: %w", err)
		if rerr := putBack(d.cfg.DataDir, stale, moved); rerr != nil {
			d.fatal(fmt.Errorf("%w; and putting the old store back: %v", err, rerr))
			return nil, 0, err
		}
		var rerr error
		if st, peers, rerr = d.openStore(); rerr != nil {
			d.fatal(fmt.Errorf("%w; and reopening the old store: %v", err, rerr))
			return nil, 0, err
		}
	}
	inst, rerr := d.restart(st, peers)
	return inst, own, errors.Join(err, rerr)
}

// restart puts a running instance on st in the slot.
func (d *Daemon) restart(st *store.Store, peers *peerFile) (*instance, error) {
	inst, err := d.newInstance(st, peers, false)
	if err != nil {
		d.fatal(fmt.Errorf("rejoin: starting the cluster node again: %w", err))
		return nil, err
	}
	d.start(inst)
	d.slot.put(inst)
	return inst, nil
}

// fatal ends Run with err: the daemon cannot go on.
func (d *Daemon) fatal(err error) {
	d.log.Error("stopping", "error", err)
	select {
	case d.errc <- err:
	default:
	}
}

// storeFiles names the files of the store and its peer book in data_dir:
// the store file and whatever the store keeps beside it under its name
// (its write-ahead log).
func (d *Daemon) storeFiles() []string {
	base := filepath.Base(d.cfg.StorePath())
	names := []string{peersFileName}
	entries, _ := os.ReadDir(d.cfg.DataDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base) {
			names = append(names, e.Name())
		}
	}
	return names
}

// awaitBootstrap waits until the fresh node has pulled a copy from a peer
// (or found none).
func awaitBootstrap(ctx context.Context, inst *instance) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for inst.node.Bootstrapping() {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// makeStaleDir creates data_dir/stale-<UTC time>/ (with a counter if a
// rejoin in the same second made one).
func makeStaleDir(dataDir string, now time.Time) (string, error) {
	base := filepath.Join(dataDir, "stale-"+now.UTC().Format("20060102T150405Z"))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o750)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", err
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

// moveAside renames the named files of dir into stale, returning those it
// moved; missing ones are skipped.
func moveAside(dir, stale string, names []string) ([]string, error) {
	var moved []string
	for _, name := range names {
		err := os.Rename(filepath.Join(dir, name), filepath.Join(stale, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("moving %s aside: %w", name, err)
		}
		moved = append(moved, name)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return moved, err
	}
	return moved, atomicfile.SyncDir(stale)
}

// putBack undoes moveAside.
func putBack(dir, stale string, moved []string) error {
	var errs []error
	for _, name := range moved {
		os.Remove(filepath.Join(dir, name)) // a fresh file created in its place
		errs = append(errs, os.Rename(filepath.Join(stale, name), filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}

// saveOwnWrites writes to path, as export lines, st's own writes made
// after cutoff (cluster.OwnWrites). It returns how many.
func saveOwnWrites(st *store.Store, path string, cutoff time.Time) (int, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	n := 0
	err = cluster.OwnWrites(st, cutoff, func(r store.Record) error {
		b, err := json.Marshal(toRPC(r, true))
		if err != nil {
			return err
		}
		n++
		_, err = w.Write(append(b, '\n'))
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	return n, err
}

// reapply writes the records of an own-writes file as new local writes
// (cluster.Node.Reapply: skipped where the store already holds a version
// that descends from the record), each replicated like any local write.
func reapply(ctx context.Context, inst *instance, path string) (reapplied, skipped uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*store.MaxMaxValueSize+1<<20)
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return reapplied, skipped, err
		}
		var r rpc.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return reapplied, skipped, fmt.Errorf("%s: %w", path, err)
		}
		rec, err := fromRPC(r)
		if err != nil {
			return reapplied, skipped, fmt.Errorf("%s: key %q: %w", path, r.Key, err)
		}
		did, err := inst.node.Reapply(ctx, inst.store, rec)
		if err != nil {
			return reapplied, skipped, fmt.Errorf("re-applying %q: %w", rec.Key, err)
		}
		if did {
			reapplied++
		} else {
			skipped++
		}
	}
	return reapplied, skipped, sc.Err()
}
