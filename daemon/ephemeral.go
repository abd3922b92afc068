package daemon

import (
	"context"
	"time"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// dropStaleEphemeral deletes, as ordinary local writes, the ephemeral keys
// this node wrote in an earlier boot (docs/ARCHITECTURE.md, "Expiring and
// ephemeral keys"): they are hidden everywhere already (the boot epoch
// changed), and real tombstones make that permanent. It waits until the
// node has synced, so that a key another node overwrote meanwhile is seen
// overwritten here first; each delete is conditional on the key still
// being absent to a compare-and-set (a hidden ephemeral record is), so an
// ordinary key is never deleted.
func (d *Daemon) dropStaleEphemeral(ctx context.Context, inst *instance) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for inst.node.Bootstrapping() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	st := inst.store
	var keys []string
	if err := st.StaleEphemeral(func(r store.Record) error { keys = append(keys, r.Key); return ctx.Err() }); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("listing ephemeral keys of an earlier boot", "error", err)
		}
		return
	}
	dropped := 0
	for _, key := range keys {
		if ctx.Err() != nil {
			return
		}
		cur, release, err := d.enter()
		if err != nil {
			return // stopping, or a rejoin: the next start does it
		}
		if cur != inst { // replaced: the next instance drops its own
			release()
			return
		}
		zero := uint64(0)
		_, err = backend{d}.write(ctx, inst, key, nil, true, rpc.WriteOptions{IfVersion: &zero})
		release()
		if err == nil {
			dropped++
		}
	}
	if len(keys) > 0 {
		d.log.Info("deleted the ephemeral keys of an earlier boot", "keys", dropped, "of", len(keys))
	}
}
