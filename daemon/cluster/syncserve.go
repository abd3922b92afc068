package cluster

import (
	"context"
	"net"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// serveSync answers a sync session a peer opened with open on c.
func (n *Node) serveSync(ctx context.Context, c net.Conn, peer store.NodeID, open *wire.SyncTop) {
	s := &session{n: n, ctx: ctx, c: c, peer: peer, settled: n.sync.settled()}
	if n.st.Counting() { // no tree to compare yet (docs/ARCHITECTURE.md, "The digest at restart")
		n.stats.syncDeclined.Add(1)
		s.send(&wire.SyncDone{Refused: "busy: counting its records after a restart"})
		return
	}
	// The rule is applied here too: the opener's HELLO may not have
	// arrived yet (equal top digests are equal roots).
	refuse, newly := n.sync.refuseSession(peer, open.Tops == n.st.TopDigests(), time.Now())
	if newly {
		name := peer.String()
		if m, ok := n.members.get(peer); ok {
			name = m.Name
		}
		n.logQuarantine(peer, name, "it opened a sync session after longer than purge_log_ttl apart, with other data")
	}
	if refuse {
		n.stats.syncDeclined.Add(1)
		s.send(&wire.SyncDone{Refused: refusedQuarantined + ": this node was not in sync with yours for longer than purge_log_ttl"})
		return
	}
	if n.sync.loading.Load() && open.Tops != ([256]store.Hash{}) {
		// This node bootstraps an empty store (bootstrap.go): what the
		// opener would push is on its way in key order, loaded in bulk;
		// taken now, in leaf order through the log, it cost both sessions
		// several times over (docs/ARCHITECTURE.md, "The bootstrap
		// pipeline"). The next session after the bootstrap repairs what
		// the bootstrap's peer lacked.
		n.stats.syncDeclined.Add(1)
		s.send(&wire.SyncDone{Refused: "busy: bootstrapping"})
		return
	}
	if !n.sync.acquireServe() {
		n.stats.syncDeclined.Add(1)
		s.send(&wire.SyncDone{Refused: "busy: serving other sync sessions"})
		return
	}
	defer n.sync.releaseServe()
	n.stats.syncServed.Add(1)
	start := time.Now()
	if err := s.respond(open); err != nil {
		if ctx.Err() == nil {
			n.log.Debug("served sync session failed", "peer", peer, "sent", s.sent, "received", s.recvd, "error", err)
		}
		return
	}
	n.sync.completed(peer, time.Now())
	if s.repaired > 0 {
		n.sync.fault("served repaired", time.Now()) // this node lacked something, or a peer did: look further
	}
	n.log.Debug("served sync session", "peer", peer, "sent", s.sent, "received", s.recvd,
		"repaired", s.repaired, "took", time.Since(start))
}

// respond is the other side of runOpener's turns.
func (s *session) respond(open *wire.SyncTop) error {
	rounds, err := s.answerTops(open)
	if err != nil {
		return err
	}
	for range rounds {
		keys := map[uint16][]wire.KeyEntry{}
		var leaves []uint16
		err := s.readTurn(func(m wire.Message) error {
			sk, ok := m.(*wire.SyncKeys)
			if !ok {
				return errUnexpected
			}
			if _, seen := keys[sk.Leaf]; !seen {
				leaves = append(leaves, sk.Leaf)
			}
			keys[sk.Leaf] = append(keys[sk.Leaf], sk.Entries...)
			return nil
		})
		if err != nil {
			return err
		}
		for _, leaf := range leaves {
			if err := s.answerKeys(leaf, keys[leaf]); err != nil {
				return err
			}
		}
		if err := s.endTurn(); err != nil {
			return err
		}
	}
	if err := s.readTurn(nil); err != nil {
		return err
	}
	// Everything the opener sent is applied: tell it the session is over
	// (with the purge log's answers to deleted values it sent).
	return s.endTurn()
}

// answerTops is the first turn: the leaves of every top node whose digest
// differs from the opener's, or, where the opener holds nothing under it,
// the records themselves. It returns how many SYNC_LEAVES it sent: the
// number of rounds that follow.
func (s *session) answerTops(open *wire.SyncTop) (int, error) {
	mine := s.n.st.TopDigests()
	if all, ok := s.n.st.(allPeeker); ok && open.Tops == ([256]store.Hash{}) && mine != open.Tops {
		// The opener holds nothing (a bootstrap): everything, in key order.
		return 0, s.sendAll(all)
	}
	rounds := 0
	for t := range mine {
		if mine[t] == open.Tops[t] {
			continue
		}
		leaves := s.n.st.LeafDigests(uint8(t))
		if !open.Tops[t].IsZero() {
			if err := s.send(&wire.SyncLeaves{Top: uint8(t), Leaves: leaves}); err != nil {
				return 0, err
			}
			rounds++
			continue
		}
		for j := range leaves {
			if leaves[j].IsZero() {
				continue
			}
			if err := s.sendLeaf(uint16(t)<<8 | uint16(j)); err != nil {
				return 0, err
			}
		}
	}
	return rounds, s.endTurn()
}

// answerKeys compares the opener's entries of a leaf with ours: it sends
// our records the opener lacks or holds under another hash, and asks for
// those of the opener's we lack or hold under another hash. A key both
// hold differently travels both ways, so both sides resolve the pair.
func (s *session) answerKeys(leaf uint16, theirs []wire.KeyEntry) error {
	entries, err := s.n.st.LeafEntries(leaf)
	if err != nil {
		return err
	}
	theirHash := make(map[store.Hash]store.Hash, len(theirs))
	for _, e := range theirs {
		theirHash[e.KeyHash] = e.Hash
	}
	mine := make(map[store.Hash]store.Hash, len(entries))
	for _, e := range entries {
		mine[e.KeyHash] = e.Hash
		if h, ok := theirHash[e.KeyHash]; !ok || h != e.Hash {
			if err := s.sendKey(e.Key); err != nil {
				return err
			}
		}
	}
	var want []wire.KeyEntry
	for _, e := range theirs {
		if h, ok := mine[e.KeyHash]; !ok || h != e.Hash {
			want = append(want, e)
		}
	}
	if len(want) == 0 {
		return nil
	}
	return s.sendKeys(leaf, want)
}

// sendAll sends every record to an opener that holds none, then ends the
// turn. In key order (store.PeekAll) rather than leaf by leaf: the same
// records, read a chunk at a time instead of one read per record, and the
// opener's flushes append to its file instead of rewriting pages all over
// it (docs/ARCHITECTURE.md, "The bootstrap pipeline").
func (s *session) sendAll(st allPeeker) error {
	if err := st.PeekAll(s.sendRecord); err != nil {
		return err
	}
	return s.endTurn()
}

// allPeeker is a Store that reads every record in key order;
// *store.Store is one.
type allPeeker interface {
	PeekAll(fn func(store.Record) error) error
}

var _ allPeeker = (*store.Store)(nil)
