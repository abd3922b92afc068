package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// startNodes starts n nodes named n0, n1, … on nw (startSimClusterWith),
// calling setup on each before it starts, and waits until every node sees
// every other and is synced.
func startNodes(t *testing.T, nw *simnet.Network, n int, setup func(i int, sn *simNode)) []*simNode {
	t.Helper()
	nodes := startSimClusterWith(t, nw, n, simOptions{setup: setup})
	waitFor(t, 20*simHeartbeat, func() error { return synced(nodes) })
	return nodes
}

// settle waits until the member table of n nodes has gone settleIntervals
// of the cluster's heartbeats (stretched beyond 16 nodes) without a
// change, with a heartbeat to spare.
func settle(n int) { time.Sleep((settleIntervals + 1) * stretch(simHeartbeat, n)) }

// writeWait is a local write through sn that waits for want ACKs, as the
// daemon does it: sent while it commits (early) or after.
func writeWait(sn *simNode, key, value string, want int, early bool) (store.Record, int, error) {
	ctx := context.Background()
	if early {
		ctx = Overlap(ctx, want)
	}
	rec, err := sn.st.Set(ctx, key, []byte(value), nil)
	if err != nil {
		return rec, 0, err
	}
	n, err := sn.node.ReplicateWait(ctx, rec, want, 5*time.Second)
	return rec, n, err
}

// keyAvoiding returns a key of which sn is not a witness among nodes (all
// alive), with r witnesses.
func keyAvoiding(t *testing.T, nodes []*simNode, sn *simNode, prefix string, r int) string {
	for i := range 1000 {
		key := fmt.Sprintf("%s/%d", prefix, i)
		if !slices.Contains(keyWitnesses(nodes, key, r), sn) {
			return key
		}
	}
	t.Fatal("no key found whose witnesses leave the node out")
	return ""
}

// onlyAsked is a transport on which an UPDATE the node broadcasts reaches
// only the peers it asks to ACK — none for one that asks nobody — as if
// lost on the way to every other: a write is then held by its writer and
// the peers its ACKs come from, and a fresh read finds it only by asking
// one of them.
type onlyAsked struct {
	transport.Transport
	sealer wire.Sealer
	mu     sync.Mutex
	addrs  map[store.NodeID]netip.AddrPort
}

func (o *onlyAsked) Broadcast(b []byte) error {
	_, msg, err := wire.Decode(b, o.sealer)
	up, ok := msg.(*wire.Update)
	if err != nil || !ok || len(up.More) > 0 || !up.NoAck && len(up.AckFrom) == 0 {
		return o.Transport.Broadcast(b)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range up.AckFrom {
		if a, ok := o.addrs[id]; ok {
			o.Transport.SendTo(a, b)
		}
	}
	return nil
}

// TestSimWitnessReads (docs/PROTOCOL.md, Fresh reads): on 10 nodes, writes
// from random nodes that wait for one ACK, each reaching only the peers it
// asks (onlyAsked) — which the first request picks among the witnesses, so
// no write needs a resend — then a fresh read from another node: every
// read sees the acknowledged version, and a read on the witness path asks at most r
// peers — its QUERYs and ANSWERs are at most 2·(asked−1) datagrams, r
// when the asker is not a witness itself, r−1 when it is.
func TestSimWitnessReads(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		const n, r, writes = 10, DefaultFreshWitnesses, 30
		rng := rand.New(rand.NewPCG(seed, 61))
		nw := lossless(seed)
		wraps := make([]*onlyAsked, n)
		counters := make([]*typeCounter, n)
		nodes := startNodes(t, nw, n, func(i int, sn *simNode) {
			sn.wrap = func(tr transport.Transport) transport.Transport {
				wraps[i] = &onlyAsked{Transport: tr, sealer: wire.Plaintext("sim")}
				counters[i] = countTypes(wraps[i])
				return counters[i]
			}
		})
		addrs := map[store.NodeID]netip.AddrPort{}
		for _, sn := range nodes {
			addrs[sn.st.NodeID()] = sn.addr
		}
		for _, w := range wraps {
			w.mu.Lock()
			w.addrs = addrs
			w.mu.Unlock()
		}
		settle(len(nodes))
		datagrams := func() (total uint64) {
			for _, c := range counters {
				total += c.byType[wire.TypeQuery].Load() + c.byType[wire.TypeAnswer].Load()
			}
			return total
		}
		witnessReads, early := 0, 0
		for i := range writes {
			w := nodes[rng.IntN(n)]
			key := fmt.Sprintf("%s/k%d", w.name, rng.IntN(4))
			start := time.Now()
			rec, acked, err := writeWait(w, key, fmt.Sprint("v", i), 1, i%2 == 0)
			if err != nil || acked < 1 {
				t.Fatalf("write %d of %s by %s: %d ACKs, %v", i, key, w.name, acked, err)
			}
			// Its first request asks the witnesses: no resend needed.
			if took := time.Since(start); took >= resendEvery {
				t.Errorf("write %d of %s by %s took %v: a resend was needed for a witness's ACK", i, key, w.name, took)
			}
			if i%2 == 0 {
				early++
			}
			asker := w
			for asker == w {
				asker = nodes[rng.IntN(n)]
			}
			before := datagrams()
			res, err := asker.node.FreshGet(context.Background(), key, 0)
			if err != nil {
				t.Fatal(err)
			}
			sent := datagrams() - before
			if !res.Found || !res.Record.VV.Dominates(rec.VV) {
				t.Fatalf("write %d: %s read %s as %v (found %v) after %s's write %v was acknowledged; %+v",
					i, asker.name, key, res.Record.VV, res.Found, w.name, rec.VV, res)
			}
			if res.Asked == res.Alive {
				t.Logf("write %d: the read asked every node (%+v)", i, res)
				continue
			}
			witnessReads++
			if res.Asked-1 > r || res.Answered != res.Asked || sent > uint64(2*(res.Asked-1)) {
				t.Errorf("write %d: a witness read asked %d nodes (this one included), %d answered, %d QUERY and ANSWER datagrams; want at most %d peers, all answering, 2 datagrams each",
					i, res.Asked, res.Answered, sent, r)
			}
		}
		t.Logf("%d of %d reads on the witness path, %d writes sent before their commit", witnessReads, writes, early)
		if witnessReads < writes*9/10 {
			t.Errorf("only %d of %d reads took the witness path on a settled, lossless network", witnessReads, writes)
		}
	})
}

// delayAcks is a transport that holds the ACKs a node sends for delay (0:
// none), as if the node were slow to acknowledge.
type delayAcks struct {
	transport.Transport
	delay atomic.Int64 // ns
}

func (d *delayAcks) SendTo(to netip.AddrPort, b []byte) error {
	if hold := time.Duration(d.delay.Load()); hold > 0 && len(b) > wire.HeaderSize && wire.MsgType(b[wire.HeaderSize]) == wire.TypeAck {
		b = slices.Clone(b)
		time.AfterFunc(hold, func() { d.Transport.SendTo(to, b) })
		return nil
	}
	return d.Transport.SendTo(to, b)
}

// TestSimWriteWaitsForWitness: a write waiting for one ACK, whose
// non-witness peers acknowledge at once and whose witnesses only after a
// second, is done only once a witness acknowledged — sent after its
// commit or while it commits.
func TestSimWriteWaitsForWitness(t *testing.T) {
	const r, slow = 2, time.Second
	for _, early := range []bool{false, true} {
		t.Run(fmt.Sprintf("early=%v", early), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				delays := make([]*delayAcks, 5)
				nodes := startNodes(t, lossless(1), 5, func(i int, sn *simNode) {
					sn.witnesses = r
					sn.wrap = func(tr transport.Transport) transport.Transport {
						delays[i] = &delayAcks{Transport: tr}
						return delays[i]
					}
				})
				writer := nodes[0]
				key := keyAvoiding(t, nodes, writer, "slow", r)
				wits := keyWitnesses(nodes, key, r)
				for i, sn := range nodes {
					if slices.Contains(wits, sn) {
						delays[i].delay.Store(int64(slow))
					}
				}
				start := time.Now()
				_, acked, err := writeWait(writer, key, "v", 1, early)
				took := time.Since(start)
				t.Logf("witnesses %s, %s; done after %v with %d ACKs", wits[0].name, wits[1].name, took, acked)
				if err != nil || took < slow || took > slow+time.Second {
					t.Errorf("the write was done after %v (%v): want once a witness's ACK, delayed %v, came", took, err, slow)
				}
				if acked < 2 {
					t.Errorf("%d ACKs: the fast non-witness peers were never asked", acked)
				}
			})
		})
	}
}

// TestSimWriteWitnessesGone: a write whose witnesses are all down stops
// waiting for one of them once none is alive (suspect, here) at a resend,
// and is done with its non-witness ACKs, not left to time out.
func TestSimWriteWitnessesGone(t *testing.T) {
	const r = 2
	synctest.Test(t, func(t *testing.T) {
		nw := lossless(1)
		nodes := startNodes(t, nw, 5, func(_ int, sn *simNode) { sn.witnesses = r })
		writer := nodes[0]
		key := keyAvoiding(t, nodes, writer, "gone", r)
		wits := keyWitnesses(nodes, key, r)
		rest := slices.DeleteFunc(slices.Clone(nodes), func(sn *simNode) bool { return slices.Contains(wits, sn) })
		nw.Partition(addrs(wits), addrs(rest))
		start := time.Now()
		_, acked, err := writeWait(writer, key, "v", 1, false)
		took := time.Since(start)
		if err != nil || acked < 1 {
			t.Fatalf("after %v: %d ACKs, %v; want done once the witnesses are suspect", took, acked, err)
		}
		if suspectAfter := 3 * simHeartbeat; took < suspectAfter-simHeartbeat || took > suspectAfter+2*simHeartbeat {
			t.Errorf("done after %v, want about when the witnesses turn suspect (%v)", took, suspectAfter)
		}
	})
}

// TestSimWitnessCrashed: a witness that acknowledged a write crashes (its
// peers do not yet suspect it); a fresh read, finding it silent at the
// first resend, asks every node, and the writer's answer brings the
// write. The write reached that witness alone: the others were cut from
// the writer while it was sent.
func TestSimWitnessCrashed(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 62))
		nw := lossless(seed)
		nodes := startNodes(t, nw, 6, nil)
		settle(len(nodes))
		writer := nodes[0]
		key := keyAvoiding(t, nodes, writer, fmt.Sprint("crash", rng.IntN(1000)), DefaultFreshWitnesses)
		wits := keyWitnesses(nodes, key, DefaultFreshWitnesses)
		crashed := wits[0]
		var others []*simNode
		for _, sn := range nodes {
			if sn != writer && sn != crashed {
				others = append(others, sn)
			}
		}
		asker := others[rng.IntN(len(others))]

		nw.Block([]netip.AddrPort{writer.addr}, addrs(others))
		rec, acked, err := writeWait(writer, key, "v", 1, rng.IntN(2) == 0)
		if err != nil || acked < 1 {
			t.Fatalf("write: %d ACKs, %v", acked, err)
		}
		nw.Heal()
		nw.Partition([]netip.AddrPort{crashed.addr}, addrs(slices.DeleteFunc(slices.Clone(nodes), func(sn *simNode) bool { return sn == crashed })))
		if !aliveAt(asker, crashed) {
			t.Fatal("the crashed witness is suspect already")
		}

		escalated := asker.node.Stats().FreshEscalated
		res, err := asker.node.FreshGet(context.Background(), key, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Found || !res.Record.VV.Dominates(rec.VV) {
			t.Fatalf("%s read %v (found %v), want the write %v acknowledged by the crashed witness %s; %+v",
				asker.name, res.Record.VV, res.Found, rec.VV, crashed.name, res)
		}
		if asker.node.Stats().FreshEscalated != escalated+1 || res.Asked != res.Alive {
			t.Errorf("the read did not escalate to every node: %+v", res)
		}
	})
}

// TestSimWitnessUnsettled: a fresh read asks every node while the member
// table is not settled — a member joined lately, or is suspect — or a
// member advertises no witnesses (a node before them, or with them off),
// and only the key's witnesses otherwise.
func TestSimWitnessUnsettled(t *testing.T) {
	path := func(t *testing.T, asker *simNode, key string) (witnesses bool) {
		t.Helper()
		before := asker.node.Stats()
		res, err := asker.node.FreshGet(context.Background(), key, 0)
		if err != nil {
			t.Fatal(err)
		}
		after := asker.node.Stats()
		switch {
		case after.FreshWitnesses == before.FreshWitnesses+1 && res.Asked <= DefaultFreshWitnesses+1:
			return true
		case after.FreshAll == before.FreshAll+1 && res.Asked == res.Alive:
			return false
		}
		t.Fatalf("a read counted neither as a witness read nor as one of everyone: %+v, stats %+v", res, after)
		return false
	}
	t.Run("joined", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nw := lossless(1)
			nodes := startNodes(t, nw, 4, nil)
			settle(len(nodes))
			asker := nodes[0]
			if !path(t, asker, "k") {
				t.Fatal("a settled table: the read asked everyone")
			}
			late := startSimNode(t, nw, simDir(t), "late", nil)
			t.Cleanup(func() { late.stop(t) })
			joined := time.Now()
			waitFor(t, 5*simHeartbeat, func() error {
				if m, ok := asker.node.members.get(late.st.NodeID()); !ok || m.Syncing || !aliveAt(asker, late) {
					return errors.New("the new member is not alive and synced at the asker")
				}
				return nil
			})
			if time.Since(joined) >= settleIntervals*simHeartbeat {
				t.Fatalf("the new member took %v to be seen synced: nothing left to check", time.Since(joined))
			}
			if path(t, asker, "k") {
				t.Error("a member joined lately: the read asked the witnesses alone")
			}
			time.Sleep(settleIntervals*simHeartbeat - time.Since(joined) + simHeartbeat)
			if !path(t, asker, "k") {
				t.Error("settled again: the read asked everyone")
			}
		})
	})
	t.Run("suspect", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nw := lossless(1)
			nodes := startNodes(t, nw, 5, nil)
			settle(len(nodes))
			asker, gone := nodes[0], nodes[4]
			nw.Partition(addrs(nodes[:4]), addrs(nodes[4:]))
			waitFor(t, 5*simHeartbeat, func() error {
				if aliveAt(asker, gone) {
					return errors.New("not suspect yet")
				}
				return nil
			})
			if path(t, asker, "k") {
				t.Error("a member suspect: the read asked the witnesses alone")
			}
		})
	})
	t.Run("older member", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nodes := startNodes(t, lossless(1), 5, func(i int, sn *simNode) {
				if i == 4 {
					sn.witnesses = -1 // advertises 0, as a node before witnesses
				}
			})
			settle(len(nodes))
			for _, sn := range nodes {
				if path(t, sn, "k") {
					t.Errorf("%s: a member advertises no witnesses, and the read asked the witnesses alone", sn.name)
				}
			}
		})
	})
}
