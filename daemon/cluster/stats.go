package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/cloudknowledge/ck/store"
)

// Stats counts the protocol's traffic and outcomes, for metrics.
type Stats struct {
	sent, received, sendErrors                  atomic.Uint64
	applyErrors, fetchErrors                    atomic.Uint64
	appliedNew, ignored, conflicts, droppedRecs atomic.Uint64
	queries, readRepairs                        atomic.Uint64
	freshWitness, freshAll, freshEscalated      atomic.Uint64
	syncOpened, syncCompleted                   atomic.Uint64
	syncFailed, syncRefused                     atomic.Uint64
	syncServed, syncDeclined                    atomic.Uint64
	syncEmpty                                   atomic.Uint64
	syncRecordsIn, syncRecordsOut               atomic.Uint64
	duplicateID                                 atomic.Bool

	mu    sync.Mutex
	drops map[string]uint64
}

// StatsSnapshot is a copy of the counters.
type StatsSnapshot struct {
	Sent, Received, SendErrors  uint64
	ApplyErrors, FetchErrors    uint64
	Applied, Ignored, Conflicts uint64
	DroppedRecords              uint64 // expired tombstones and deleted values coming back (store.Dropped)
	Queries, ReadRepairs        uint64 // fresh reads asked; answerers repaired
	// Fresh reads by path: asking the key's witnesses alone, every node,
	// or the witnesses and then every node, one of them silent.
	FreshWitnesses, FreshAll, FreshEscalated uint64
	// Sync sessions this node opened, by outcome (Refused: by the peer);
	// those it served, and those it declined (serving too many).
	SyncOpened, SyncCompleted, SyncFailed, SyncRefused, SyncServed, SyncDeclined uint64
	// SyncEmpty counts the completed sessions this node opened that
	// repaired nothing: every record they moved, if any, was written after
	// this node's previous heartbeat, so replication was bringing it.
	SyncEmpty                     uint64
	SyncRecordsIn, SyncRecordsOut uint64            // records received and sent in sessions
	Dropped                       map[string]uint64 // by reason
	DuplicateID                   bool
}

func (s *Stats) dropped(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drops == nil {
		s.drops = map[string]uint64{}
	}
	s.drops[reason]++
}

func (s *Stats) applied(o store.Outcome) {
	switch o {
	case store.Applied:
		s.appliedNew.Add(1)
	case store.Resolved:
		s.conflicts.Add(1)
	case store.Dropped:
		s.droppedRecs.Add(1)
	default:
		s.ignored.Add(1)
	}
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() StatsSnapshot {
	s := &n.stats
	s.mu.Lock()
	drops := make(map[string]uint64, len(s.drops))
	for k, v := range s.drops {
		drops[k] = v
	}
	s.mu.Unlock()
	return StatsSnapshot{
		Sent: s.sent.Load(), Received: s.received.Load(), SendErrors: s.sendErrors.Load(),
		ApplyErrors: s.applyErrors.Load(), FetchErrors: s.fetchErrors.Load(),
		Applied: s.appliedNew.Load(), Ignored: s.ignored.Load(), Conflicts: s.conflicts.Load(), DroppedRecords: s.droppedRecs.Load(),
		Queries: s.queries.Load(), ReadRepairs: s.readRepairs.Load(),
		FreshWitnesses: s.freshWitness.Load(), FreshAll: s.freshAll.Load(), FreshEscalated: s.freshEscalated.Load(),
		SyncOpened: s.syncOpened.Load(), SyncCompleted: s.syncCompleted.Load(), SyncFailed: s.syncFailed.Load(),
		SyncRefused: s.syncRefused.Load(), SyncServed: s.syncServed.Load(), SyncDeclined: s.syncDeclined.Load(),
		SyncEmpty:     s.syncEmpty.Load(),
		SyncRecordsIn: s.syncRecordsIn.Load(), SyncRecordsOut: s.syncRecordsOut.Load(),
		Dropped: drops, DuplicateID: s.duplicateID.Load(),
	}
}
