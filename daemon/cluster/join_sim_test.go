package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/internal/simnet"
)

// heldDialTransport holds every stream this node opens until release is
// closed: a bootstrap that cannot make progress, as over a slow link.
type heldDialTransport struct {
	transport.Transport
	release chan struct{}
}

func (h heldDialTransport) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	select {
	case <-h.release:
		return h.Transport.Dial(ctx, to)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSimFreshReadWhileBootstrapping: a node joining a loaded cluster,
// whose bootstrap session is held, finds by a fresh read (the path the
// daemon takes for a key a bootstrapping node lacks) every key the cluster
// holds, stores it, and still completes its bootstrap once the session
// can run, converged with the others.
func TestSimFreshReadWhileBootstrapping(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 11))
		// Duplicated and reordered datagrams, not lost ones: a lost HELLO
		// can make a holder suspect, and a fresh read does not wait for
		// suspect members (TestSimFreshRead covers loss).
		nw := simnet.New(seed, simnet.Options{Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
		nodes := startSimCluster(t, nw, 2+rng.IntN(2))
		const keys = 200
		load(t, rng, nodes, "k", keys)

		release := make(chan struct{})
		joiner := newSimNode(t, nw, simDir(t), "joiner", nil)
		joiner.wrap = func(tr transport.Transport) transport.Transport { return heldDialTransport{tr, release} }
		joiner.start(t)
		t.Cleanup(func() { joiner.stop(t) })
		all := append(nodes, joiner)
		waitFor(t, 20*simHeartbeat, func() error {
			if !allSee(all, len(all)-1) {
				return fmt.Errorf("the joiner sees %d peers", joiner.node.AlivePeers())
			}
			return nil
		})
		for range 5 {
			key := fmt.Sprintf("k/%06d", rng.IntN(keys))
			if !joiner.node.Bootstrapping() {
				t.Fatal("the joiner bootstrapped with its streams held")
			}
			if _, found, _ := joiner.st.Get(key); found {
				continue // asked already
			}
			res, err := joiner.node.FreshGet(context.Background(), key, 0)
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := nodes[0].st.Get(key)
			if !res.Found || res.Record.Hash() != want.Hash() {
				t.Fatalf("fresh read of %s while bootstrapping: %+v; want %q", key, res, want.Value)
			}
			if err := holds(joiner, key, want.Hash()); err != nil {
				t.Errorf("the joiner did not keep the answer: %v", err)
			}
		}
		close(release)
		waitFor(t, 30*simHeartbeat, func() error {
			if err := synced(all); err != nil {
				return err
			}
			return converged(all)
		})
		if n := joiner.st.Keys(); n != keys {
			t.Errorf("the joiner holds %d keys after its bootstrap; want %d", n, keys)
		}
		time.Sleep(simHeartbeat) // let the last datagrams land before the stores close
	})
}
