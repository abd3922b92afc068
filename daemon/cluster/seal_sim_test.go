package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
)

// TestSimEncrypted: a cluster with a key replicates, syncs and answers
// fresh reads over sealed datagrams and streams, under loss; a node with
// another key on the same network learns nothing and changes nothing.
func TestSimEncrypted(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		key, _ := seal.ParseKey(seal.GenerateKey())
		wrong, _ := seal.ParseKey(seal.GenerateKey())
		nw := lossy(seed)
		dir := simDir(t)
		var nodes []*simNode
		for i := range 3 {
			sn := newSimNode(t, nw, dir, fmt.Sprintf("n%d", i), nil)
			sn.key = key
			sn.start(t)
			nodes = append(nodes, sn)
		}
		intruder := newSimNode(t, nw, dir, "intruder", nil)
		intruder.key = wrong
		intruder.start(t)
		t.Cleanup(func() {
			for _, sn := range append(nodes, intruder) {
				sn.stop(t)
			}
		})
		waitFor(t, 20*simHeartbeat, func() error {
			for _, sn := range nodes {
				if sn.node.AlivePeers() != 2 {
					return fmt.Errorf("%s sees %d peers", sn.name, sn.node.AlivePeers())
				}
			}
			return nil
		})
		h := &history{}
		for i := range 10 {
			h.write(t, nodes[i%3], fmt.Sprintf("k%d", i), "secret")
		}
		// The intruder writes too: nobody may take it.
		intruder.write(t, "k0", "forged", 0)
		intruder.write(t, "intruder/only", "forged", 0)
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })
		checkWrites(t, nodes, h)
		// Under loss a peer whose last two HELLOs were lost is overdue, and
		// the read may stop without it (docs/PROTOCOL.md, Fresh reads): a
		// sealed answer got through when at least one peer answered.
		res, err := nodes[2].node.FreshGet(context.Background(), "k1", 0)
		if err != nil || !res.Found || string(res.Record.Value) != "secret" || res.Answered < 2 {
			t.Errorf("fresh read: %+v, %v", res, err)
		}
		for _, sn := range nodes {
			if _, ok, _ := sn.st.Get("intruder/only"); ok {
				t.Errorf("%s took a record from a node with another key", sn.name)
			}
			if r, _, _ := sn.st.Get("k0"); string(r.Value) == "forged" {
				t.Errorf("%s took the intruder's value", sn.name)
			}
			// The intruder says HELLO every heartbeat; some are lost.
			waitFor(t, 20*simHeartbeat, func() error {
				if sn.node.Stats().Dropped["key"] == 0 {
					return fmt.Errorf("%s dropped no frame under the wrong key", sn.name)
				}
				return nil
			})
		}
		if intruder.node.AlivePeers() != 0 || intruder.st.Keys() != 2 {
			t.Errorf("the intruder sees %d peers and holds %d keys", intruder.node.AlivePeers(), intruder.st.Keys())
		}
		time.Sleep(simHeartbeat)
	})
}
