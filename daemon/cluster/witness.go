package cluster

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// Witnesses (docs/PROTOCOL.md, Fresh reads; docs/ARCHITECTURE.md, Fresh
// reads at scale): each key's r members with the highest rendezvous score
// among the alive members and the node itself. A write that waits for ACKs
// counts one from a witness, so a fresh read that heard every witness has
// heard a holder of it, without asking every node.

// MaxFreshWitnesses bounds cluster.fresh_witnesses: a witness read asks at
// most this many peers, and a writer's first ACK request lists them.
const MaxFreshWitnesses = 16

// DefaultFreshWitnesses is cluster.fresh_witnesses by default.
const DefaultFreshWitnesses = 3

// witnessScore is the rendezvous score of node id for a key whose
// store.KeyHash is kh: the splitmix64 finaliser of the key hash's first 8
// bytes (big-endian) xor the id's first half, xor its second half, mixed
// again. Every node must compute the same: it is part of the protocol,
// pinned by TestWitnessScoreGolden.
func witnessScore(kh store.Hash, id store.NodeID) uint64 {
	k := binary.BigEndian.Uint64(kh[:8])
	hi := binary.BigEndian.Uint64(id[:8])
	lo := binary.BigEndian.Uint64(id[8:])
	return mix64(mix64(k^hi) ^ lo)
}

// mix64 is splitmix64's finaliser: every input bit moves every output bit.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// witnessesOf returns the r ids of ids with the highest score for the key
// whose hash is kh, best first (ties, which need equal scores, go to the
// lower id); all of them, so ordered, when there are at most r. ids is
// reordered.
func witnessesOf(kh store.Hash, ids []store.NodeID, r int) []store.NodeID {
	type scored struct {
		id    store.NodeID
		score uint64
	}
	all := make([]scored, len(ids))
	for i, id := range ids {
		all[i] = scored{id, witnessScore(kh, id)}
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.id.Compare(b.id)
	})
	out := make([]store.NodeID, min(r, len(all)))
	for i := range out {
		out[i] = all[i].id
	}
	return out
}

// writeWitnesses returns the witnesses of key a write waiting for ACKs
// must hear from, best first, among this node's alive members and itself:
// none when witnesses are off, or every node is one, or this node is one
// (its own copy is then a witness's).
func (n *Node) writeWitnesses(key string) []store.NodeID {
	r := n.cfg.FreshWitnesses
	if r <= 0 {
		return nil
	}
	var buf [16]store.NodeID
	ids := n.members.aliveIDs(time.Now(), buf[:0])
	if len(ids)+1 <= r {
		return nil
	}
	w := witnessesOf(store.KeyHash(key), append(ids, n.id), r)
	if slices.Contains(w, n.id) {
		return nil
	}
	return w
}
