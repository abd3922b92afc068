package cluster

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// openSession runs a sync session with peer as its opener, logs and
// counts the outcome. onRecv, if set, is told of each batch applied.
func (n *Node) openSession(ctx context.Context, peer Member, onRecv func(int)) (*session, error) {
	n.stats.syncOpened.Add(1)
	start := time.Now()
	s, err := n.runOpener(ctx, peer, onRecv)
	switch {
	case err == nil:
		n.stats.syncCompleted.Add(1)
		if s.repaired == 0 {
			n.stats.syncEmpty.Add(1)
		}
		n.log.Debug("sync session completed", "peer", peer.Name, "sent", s.sent, "received", s.recvd,
			"repaired", s.repaired, "took", time.Since(start))
	case errors.Is(err, errQuarantined):
		n.log.Debug("no sync session with a quarantined peer", "peer", peer.Name)
	case errors.Is(err, errQuarantinedByPeer):
		n.stats.syncRefused.Add(1)
		n.quarantineSeen(peer)
	case errors.Is(err, errRefused):
		n.stats.syncRefused.Add(1)
		n.log.Debug("sync session refused", "peer", peer.Name, "error", err)
	case ctx.Err() == nil:
		n.stats.syncFailed.Add(1)
		n.log.Warn("sync session failed", "peer", peer.Name, "sent", s.sent, "received", s.recvd, "error", err)
	}
	return s, err
}

// runOpener is the opener's side of a session. Its turns:
//
//  1. SYNC_TOP: our top digests.
//  2. (peer) SYNC_LEAVES for each differing top node, and the records under
//     the top nodes where we hold nothing.
//  3. for each SYNC_LEAVES received, one round — ours: the records the peer
//     asked for in the previous round, SYNC_KEYS for each differing leaf
//     under this top node (the records themselves where the peer holds
//     nothing); (peer): the records we lack or hold under another hash, and
//     SYNC_KEYS naming those of ours it wants.
//  4. the records asked for in the last round.
//  5. (peer) SYNC_DONE: it has applied everything.
func (n *Node) runOpener(ctx context.Context, peer Member, onRecv func(int)) (*session, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{n: n, ctx: ctx, peer: peer.ID, onRecv: onRecv, settled: n.sync.settled()}
	if onRecv != nil {
		s.settled = math.MaxUint64 // a bootstrap: nothing it moves was on its way
	}
	tops := n.st.TopDigests()
	if onRecv != nil && n.sync.loading.Load() {
		// A bootstrap of a store that was empty: it asks for everything
		// (all-zero top digests, even if a few UPDATEs or an earlier
		// attempt stored records since), which the peer sends in key order
		// (syncserve.go, sendAll), and the bulk loader writes it rather
		// than the log (store/bulk.go; records it holds a version of go
		// through the log as ever). What it holds that the peer lacks, the
		// next anti-entropy session sends.
		tops = [256]store.Hash{}
		s.loader = n.st.NewLoader()
		defer s.loader.Close()
	}
	if n.sync.isQuarantined(peer.ID) {
		return s, errQuarantined
	}
	dctx, dcancel := context.WithTimeout(ctx, dialTimeout)
	c, err := n.dialStream(dctx, peer.Addr, peer.ID)
	dcancel()
	if err != nil {
		return s, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	s.c = c

	if err := s.send(&wire.SyncTop{Tops: tops}); err != nil {
		return s, err
	}
	var leaves []*wire.SyncLeaves
	err = s.readTurn(func(m wire.Message) error {
		sl, ok := m.(*wire.SyncLeaves)
		if !ok {
			return errUnexpected
		}
		leaves = append(leaves, sl)
		return nil
	})
	if err != nil {
		return s, err
	}
	var wanted []*wire.SyncKeys
	for _, sl := range leaves {
		if err := s.sendWanted(wanted); err != nil {
			return s, err
		}
		if err := s.sendTopKeys(sl); err != nil {
			return s, err
		}
		if err := s.endTurn(); err != nil {
			return s, err
		}
		wanted = nil
		err := s.readTurn(func(m wire.Message) error {
			sk, ok := m.(*wire.SyncKeys)
			if !ok {
				return errUnexpected
			}
			wanted = append(wanted, sk)
			return nil
		})
		if err != nil {
			return s, err
		}
	}
	if err := s.sendWanted(wanted); err != nil {
		return s, err
	}
	if err := s.endTurn(); err != nil {
		return s, err
	}
	if err := s.readTurn(nil); err != nil {
		return s, err
	}
	n.sync.completed(peer.ID, time.Now())
	return s, nil
}

// sendTopKeys compares the peer's leaves under one top node with ours:
// for a differing leaf it lists our records, or sends them all when the
// peer holds nothing there.
func (s *session) sendTopKeys(sl *wire.SyncLeaves) error {
	mine := s.n.st.LeafDigests(sl.Top)
	for j := range mine {
		if mine[j] == sl.Leaves[j] {
			continue
		}
		leaf := uint16(sl.Top)<<8 | uint16(j)
		if sl.Leaves[j].IsZero() {
			if err := s.sendLeaf(leaf); err != nil {
				return err
			}
			continue
		}
		// Empty when we hold nothing there: the peer then sends it all.
		entries, err := s.n.st.LeafEntries(leaf)
		if err != nil {
			return err
		}
		if err := s.sendKeys(leaf, keyEntries(entries)); err != nil {
			return err
		}
	}
	return nil
}

// sendWanted sends our current records of the entries the peer asked for.
func (s *session) sendWanted(wanted []*wire.SyncKeys) error {
	for _, sk := range wanted {
		entries, err := s.n.st.LeafEntries(sk.Leaf)
		if err != nil {
			return err
		}
		keys := make(map[store.Hash]string, len(entries))
		for _, e := range entries {
			keys[e.KeyHash] = e.Key
		}
		for _, e := range sk.Entries {
			if key, ok := keys[e.KeyHash]; ok {
				if err := s.sendKey(key); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
