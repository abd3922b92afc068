package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// A sync session runs in turns over one stream: one side writes frames
// ending with SYNC_DONE while the other only reads, then they swap. A side
// never writes while the other may be writing, so neither blocks on a full
// pipe, and each turn is bounded by one top node's worth of key lists. The
// package doc describes the turns.

const (
	// syncBatchBytes bounds the records of one SYNC_RECORDS frame (one
	// record larger than this travels alone).
	syncBatchBytes = 256 << 10
	// dialTimeout bounds opening a session's stream.
	dialTimeout = 5 * time.Second
)

var errUnexpected = errors.New("unexpected message in a sync session")

// session is one end of a sync session.
type session struct {
	n      *Node
	ctx    context.Context
	c      net.Conn
	peer   store.NodeID
	batch  []store.Record
	size   int
	sent   int           // records sent
	recvd  int           // records received
	onRecv func(int)     // told of each applied batch (bootstrap progress); may be nil
	loader *store.Loader // a bootstrap into an empty store: records go to it (store/bulk.go); may be nil

	// settled: records with a lamport up to this were written before this
	// node's previous heartbeat (syncer.settled); repaired counts those
	// the session brought that were new here: what replication had not
	// brought. Records sent are not counted: where both sides hold a key
	// differently both versions travel, the older one too, and the peer
	// counts what it lacked.
	settled  uint64
	repaired int

	purged []string // keys whose received record the purge log dropped: answered at the end of our turn
}

func (s *session) send(msg wire.Message) error {
	b, err := s.n.encodeStream(msg)
	if err != nil {
		return err
	}
	s.c.SetWriteDeadline(time.Now().Add(streamIdle))
	return wire.WriteFrame(s.c, b)
}

// read returns the next message, which must come from the session's peer.
func (s *session) read() (wire.Message, error) {
	_, msg, err := s.n.readStreamFrame(s.c, s.peer)
	return msg, err
}

// readTurn reads the peer's turn up to its SYNC_DONE, applying the records
// it carries and handing every other message to handle.
func (s *session) readTurn(handle func(wire.Message) error) error {
	for {
		msg, err := s.read()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *wire.SyncRecords:
			if err := s.applyRecords(m.Records); err != nil {
				return err
			}
		case *wire.SyncDone:
			if err := s.finishLoad(); err != nil {
				return err
			}
			if isQuarantineRefusal(m.Refused) {
				return fmt.Errorf("%w: %w: %s", errRefused, errQuarantinedByPeer, m.Refused)
			}
			if m.Refused != "" {
				return fmt.Errorf("%w: %s", errRefused, m.Refused)
			}
			return nil
		default:
			if handle == nil {
				return fmt.Errorf("%w: %s", errUnexpected, msg.Type())
			}
			if err := handle(msg); err != nil {
				return err
			}
		}
	}
}

// applyRecords applies a frame's records durably, committed together
// (store.ApplyBatch: a few log writes for the frame, no goroutine per
// record), or hands them to the session's bulk loader (a bootstrap into
// an empty store), which reports them once their chunk is written. A
// record the store refuses is counted and logged; the session goes on
// without it, and the next session tries it again.
func (s *session) applyRecords(recs []store.Record) error {
	var done []store.Loaded
	var err error
	if s.loader != nil {
		done, err = s.loader.Load(s.ctx, recs)
	} else {
		var res []store.ApplyResult
		var errs []error
		res, errs, err = applyBatch(s.ctx, s.n.st, recs)
		done = make([]store.Loaded, len(recs))
		for i := range recs {
			done[i] = store.Loaded{Record: recs[i], Result: res[i], Err: errs[i]}
		}
	}
	s.recvd += len(recs)
	s.n.stats.syncRecordsIn.Add(uint64(len(recs)))
	if s.onRecv != nil {
		s.onRecv(len(recs))
	}
	return s.applied(done, err)
}

// finishLoad writes what the session's bulk loader holds, if it has one,
// and accounts for it: the end of a peer's turn, after which everything
// received is durable (the session answers only then). The staged index
// is merged after the bootstrap (bootstrap.go, mergeStaged).
func (s *session) finishLoad() error {
	if s.loader == nil {
		return nil
	}
	done, err := s.loader.Flush(s.ctx)
	return s.applied(done, err)
}

// applied accounts for the outcomes of received records; err is the one
// that stopped them (a closed store, ctx).
func (s *session) applied(done []store.Loaded, err error) error {
	failed, first := 0, -1
	for i := range done {
		d := &done[i]
		if d.Err != nil {
			if failed++; first < 0 {
				first = i
			}
			continue
		}
		s.n.stats.applied(d.Result.Outcome)
		if o := d.Result.Outcome; (o == store.Applied || o == store.Resolved) && d.Record.Lamport <= s.settled {
			s.repaired++
		}
		if d.Result.Outcome == store.Dropped && !s.n.st.Expired(&d.Record) {
			s.purged = append(s.purged, d.Record.Key)
		}
	}
	if failed > 0 && s.ctx.Err() == nil && err == nil {
		s.n.stats.applyErrors.Add(uint64(failed))
		s.n.log.Warn("could not apply received records", "count", failed, "key", done[first].Record.Key, "error", done[first].Err)
	}
	if err != nil {
		return err
	}
	return s.ctx.Err()
}

// batchStore is a Store that commits many received records together;
// *store.Store is one.
type batchStore interface {
	ApplyBatch(ctx context.Context, recs []store.Record) ([]store.ApplyResult, []error, error)
}

var _ batchStore = (*store.Store)(nil)

// applyBatch applies recs with st's ApplyBatch, or one by one when st has
// none.
func applyBatch(ctx context.Context, st Store, recs []store.Record) ([]store.ApplyResult, []error, error) {
	if b, ok := st.(batchStore); ok {
		return b.ApplyBatch(ctx, recs)
	}
	res, errs := make([]store.ApplyResult, len(recs)), make([]error, len(recs))
	for i := range recs {
		res[i], errs[i] = st.Apply(ctx, recs[i])
	}
	return res, errs, ctx.Err()
}

// sendRecord queues a record for the peer, sending a batch when full.
func (s *session) sendRecord(rec store.Record) error {
	size := wire.RecordSize(&rec)
	if len(s.batch) > 0 && (s.size+size > syncBatchBytes || len(s.batch) == wire.MaxEntries) {
		if err := s.flush(); err != nil {
			return err
		}
	}
	s.batch = append(s.batch, rec)
	s.size += size
	s.sent++
	return nil
}

func (s *session) flush() error {
	if len(s.batch) == 0 {
		return nil
	}
	err := s.send(&wire.SyncRecords{Records: s.batch})
	s.n.stats.syncRecordsOut.Add(uint64(len(s.batch)))
	s.batch, s.size = nil, 0
	return err
}

// endTurn sends what is queued and gives the peer the turn.
func (s *session) endTurn() error {
	if err := s.sendPurged(); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	return s.send(&wire.SyncDone{})
}

// sendPurged answers the records the purge log dropped — deleted values
// the peer still holds from before a purge — with the purge log's
// tombstone, expired: the peer does not store it, but it removes the value
// it covers (store.Apply), so the two converge instead of offering the
// value again on every session.
func (s *session) sendPurged() error {
	keys := s.purged
	s.purged = nil
	for _, key := range keys {
		recs, err := s.n.st.PurgedRecords(store.KeyHash(key))
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Key != key {
				continue
			}
			if err := s.sendRecord(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendKey queues this node's current record of key, if it still has one.
func (s *session) sendKey(key string) error {
	rec, found, err := s.n.st.Peek(key)
	if err != nil || !found {
		return err
	}
	return s.sendRecord(rec)
}

// sendLeaf queues every record of a leaf: the peer holds none there.
func (s *session) sendLeaf(leaf uint16) error {
	entries, err := s.n.st.LeafEntries(leaf)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := s.sendKey(e.Key); err != nil {
			return err
		}
	}
	return nil
}

// sendKeys lists entries of a leaf, in frames of at most MaxEntries.
func (s *session) sendKeys(leaf uint16, entries []wire.KeyEntry) error {
	for {
		n := min(len(entries), wire.MaxEntries)
		if err := s.send(&wire.SyncKeys{Leaf: leaf, Entries: entries[:n]}); err != nil {
			return err
		}
		if entries = entries[n:]; len(entries) == 0 {
			return nil
		}
	}
}

func keyEntries(es []store.LeafEntry) []wire.KeyEntry {
	out := make([]wire.KeyEntry, len(es))
	for i, e := range es {
		out[i] = wire.KeyEntry{KeyHash: e.KeyHash, Hash: e.Hash}
	}
	return out
}
