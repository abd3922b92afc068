package daemon

import (
	"context"
	"syscall"

	"github.com/cloudknowledge/ck/rpc"
)

// fdHeadroom is how many descriptors ckd keeps for itself beyond the API's
// connections: the store and its log, peers.json and the files written
// beside it, the cluster's sockets, hook scripts, NATS, the listener and
// its spare. A flood of clients must not leave it unable to save
// peers.json (docs/ARCHITECTURE.md, Bounded resources).
const fdHeadroom = 64

// maxConnections is max_connections, lowered if the open-files limit
// (RLIMIT_NOFILE, which the Go runtime raises to its hard limit at
// start) would not leave fdHeadroom descriptors besides the connections
// and the status reserve.
func (d *Daemon) maxConnections() int {
	want := d.cfg.MaxConnections
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return want
	}
	room := int(lim.Cur) - fdHeadroom - rpc.StatusReserve
	if want <= room {
		return want
	}
	got := max(room, 1)
	d.log.Warn("max_connections lowered to fit the open-files limit", "max_connections", want,
		"nofile", lim.Cur, "now", got, "kept_for_ckd", fdHeadroom)
	return got
}

// waitContext is ctx, also ended when inst is retired (a rejoin starts,
// the daemon stops: instance.endWaits): the --wait of a write holds no
// lock, but its client must not be left waiting on a node that is going
// away.
func waitContext(ctx context.Context, inst *instance) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(inst.waits, func() { cancel(context.Cause(inst.waits)) })
	return wctx, func() { stop(); cancel(nil) }
}

// memoryHeadroom is the heap ckd needs besides request bodies: the
// store's copies of the values it is committing, the runtime, caches.
const memoryHeadroom = 64 << 20

// MemoryLimit is the soft memory limit for the Go runtime
// (debug.SetMemoryLimit) that keeps ckd's heap near what it holds: the
// request body budget plus headroom, or the hooks' heap limit when hooks
// are configured and that is larger. Without it the collector lets
// garbage grow to the size of the live heap again, so that bodies
// released by the budget could still double the resident memory.
// GOMEMLIMIT, when set, is left in force instead.
func (c Config) MemoryLimit() int64 {
	limit := c.MaxRequestBytes + memoryHeadroom
	if len(c.Hooks) > 0 {
		limit = max(limit, c.HookHeapLimit)
	}
	return limit
}
