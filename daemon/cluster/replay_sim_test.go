package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// TestSimRestartedReceiverHearsAtOnce: a node restarted after a crash
// holds a reservation of each peer's counter and refuses the peer's frames
// up to it — a thousand here, as of a busy peer, which idle HELLOs would
// take a quarter of an hour to pass. Hearing the new boot, each peer skips
// its counter past any reservation, so the restarted node hears them
// within a round trip, and they go on hearing each other.
func TestSimRestartedReceiverHearsAtOnce(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		key, _ := seal.ParseKey(seal.GenerateKey())
		nw := simnet.New(seed, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		dir := simDir(t)
		var nodes []*simNode
		for i := range 3 {
			sn := newSimNode(t, nw, dir, fmt.Sprintf("n%d", i), nil)
			sn.key, sn.marks = key, &seal.MemoryEpochs{}
			sn.start(t)
			nodes = append(nodes, sn)
		}
		t.Cleanup(func() {
			for _, sn := range nodes {
				sn.stop(t)
			}
		})
		seeAll := func() error {
			if !allSee(nodes, 2) {
				return errors.New("members do not all see each other")
			}
			return nil
		}
		waitFor(t, 20*simHeartbeat, seeAll)

		r := nodes[0]
		peers := []store.NodeID{nodes[1].st.NodeID(), nodes[2].st.NodeID()}
		r.stop(t) // its replay filter is never flushed: a crash's marks
		for _, id := range peers {
			m := r.marks.Load(id)
			if m == (seal.Mark{}) {
				t.Fatalf("no mark saved of peer %s", id)
			}
			m.Counter += 1000
			r.marks.SaveAll(map[store.NodeID]seal.Mark{id: m})
		}
		r.start(t)
		start := time.Now()
		waitFor(t, 2*simHeartbeat, func() error {
			if n := r.node.AlivePeers(); n != 2 {
				return fmt.Errorf("the restarted node hears %d peers", n)
			}
			return nil
		})
		t.Logf("the restarted node heard its peers after %v", time.Since(start))
		time.Sleep(5 * simHeartbeat)
		waitFor(t, simHeartbeat, seeAll)
	})
}
