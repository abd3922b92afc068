package cluster

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// queryResends is how many times within its timeout a fresh read asks
// again the alive members that have not answered: a lost QUERY or ANSWER
// then costs a fraction of the timeout, not a missing answer.
const queryResends = 9

// FreshResult is the outcome of a fresh read.
type FreshResult struct {
	// Record is the newest version among the answers (a resolution of
	// concurrent ones), now also stored here. It may be a tombstone:
	// check Record.Deleted.
	Record store.Record
	// Found is false when no node that answered holds the key at all.
	Found bool
	// Answered counts the nodes whose answer was taken, this one included;
	// Alive the members alive (or answering), this one included.
	Answered, Alive int
	// Asked counts the nodes asked, this one included: the key's witnesses
	// and this node on the witness path (r, or r+1 when this node is not a
	// witness), else Alive (docs/PROTOCOL.md, Fresh reads).
	Asked int
	// Repaired counts the answerers sent the result because they held
	// another version (read repair).
	Repaired int
}

// answer is one node's ANSWER as the asker keeps it.
type answer struct {
	from netip.AddrPort
	msg  *wire.Answer
}

// pendingQuery collects the answers to one QUERY.
type pendingQuery struct {
	answers map[store.NodeID]answer
	// awaited are the members the asker waits for (alive when it last
	// looked) that have not answered. Only an answer that leaves at most
	// coverWait of them signals kick: the asker then has something to
	// decide, and at 40 nodes it is woken once or twice a read, not 39
	// times (docs/ARCHITECTURE.md, Fresh reads at scale).
	awaited map[store.NodeID]bool
	kick    chan struct{} // signalled (never blocking); see awaited
}

// queryTable holds the fresh reads in progress, by query id.
type queryTable struct {
	mu      sync.Mutex
	pending map[uint64]*pendingQuery
}

func newQueryTable() *queryTable { return &queryTable{pending: map[uint64]*pendingQuery{}} }

func (t *queryTable) open() (uint64, *pendingQuery) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		id := rand.Uint64()
		if _, taken := t.pending[id]; id != 0 && !taken {
			q := &pendingQuery{answers: map[store.NodeID]answer{}, awaited: map[store.NodeID]bool{}, kick: make(chan struct{}, 1)}
			t.pending[id] = q
			return id, q
		}
	}
}

func (t *queryTable) close(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, id)
}

// answer records an ANSWER; the first from each node counts, and answers
// to queries nobody waits for any more are dropped.
func (t *queryTable) answer(sender store.NodeID, from netip.AddrPort, a *wire.Answer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.pending[a.ID]
	if q == nil {
		return
	}
	if _, dup := q.answers[sender]; dup {
		return
	}
	q.answers[sender] = answer{from: from, msg: a}
	if !q.awaited[sender] {
		return
	}
	delete(q.awaited, sender)
	if len(q.awaited) <= coverWait {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// silent returns the members of ms that have not answered q, and makes
// them the members q awaits.
func (t *queryTable) silent(q *pendingQuery, ms []Member) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Member
	clear(q.awaited)
	for _, m := range ms {
		if _, ok := q.answers[m.ID]; !ok {
			out = append(out, m)
			q.awaited[m.ID] = true
		}
	}
	return out
}

// snapshot returns the answers so far.
func (t *queryTable) snapshot(q *pendingQuery) map[store.NodeID]answer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[store.NodeID]answer, len(q.answers))
	for id, a := range q.answers {
		out[id] = a
	}
	return out
}

// handleQuery answers a QUERY with this node's version of the key, and the
// record itself when the asker may lack it (its version is not as new,
// or it did not say) and the answer still fits a datagram with it. It runs
// on the receive loop, not a goroutine of its own (docs/ARCHITECTURE.md,
// Fresh reads at scale): it reads one key's version, never waits for a
// commit, and sends without waiting for socket space.
func (n *Node) handleQuery(from netip.AddrPort, q *wire.Query) {
	if store.ValidateKey(q.Key) != nil {
		n.drop("malformed", nil)
		return
	}
	a, frame, err := n.answerFor(q)
	switch {
	case err != nil:
		n.log.Warn("read for a query", "key", q.Key, "error", err)
	case frame != nil:
		n.send(from, frame)
	default:
		n.sendTo(from, a)
	}
}

// answerFor is this node's ANSWER to q, and its frame when it was encoded
// already. The version is read without the value; the record is read only
// when the answer should carry it and can.
func (n *Node) answerFor(q *wire.Query) (*wire.Answer, []byte, error) {
	v, found, err := n.st.PeekVersion(q.Key)
	if err != nil {
		return nil, nil, err
	}
	a := &wire.Answer{ID: q.ID}
	if !found {
		return a, nil, nil
	}
	if !q.NotNewer(v.Record.VV, v.Hash) && v.Size < n.cfg.MaxDatagram {
		// The asker may lack it, and it may fit: read it whole (it may
		// have changed since, so the answer is made from that read).
		return n.answerWithRecord(q)
	}
	rec := &v.Record
	a.Found, a.Deleted, a.Lamport, a.VV, a.Hash = true, rec.Deleted, rec.Lamport, rec.VV, v.Hash
	return a, nil, nil
}

// answerWithRecord is the ANSWER to q made from the whole record: with
// it, unless the asker's version is as new or the answer would not fit.
// An answer with the record comes with its frame: it was encoded to learn
// whether it fits.
func (n *Node) answerWithRecord(q *wire.Query) (*wire.Answer, []byte, error) {
	rec, found, err := n.st.Peek(q.Key)
	if err != nil {
		return nil, nil, err
	}
	a := &wire.Answer{ID: q.ID}
	if found {
		a.Found, a.Deleted, a.Lamport, a.VV, a.Hash = true, rec.Deleted, rec.Lamport, rec.VV, rec.Hash()
		// RecordSize first: a large value is never copied into a frame
		// only to learn that it does not fit.
		if !q.NotNewer(rec.VV, a.Hash) && wire.RecordSize(&rec) < n.cfg.MaxDatagram {
			a.Record = &rec
			b, err := n.encode(a)
			if err == nil && len(b) <= n.cfg.MaxDatagram {
				return a, b, nil
			}
			a.Record = nil
		}
	}
	return a, nil, nil
}

// FreshGet reads key from the nodes that may hold its newest version
// (docs/PROTOCOL.md, Fresh reads): the key's witnesses alone while the
// member table is settled (ask), else every node. It waits until every
// node asked answered (but one that is overdue: awaitAnswers) or timeout
// (0: the configured query_timeout) passed — the whole timeout if this
// node has not yet been up one heartbeat, since it may not know every
// member; takes the newest answer, stores it here if it is newer than the
// local copy (concurrent versions are applied so that the store resolves
// them), and pushes the result to every answerer that held another
// version.
func (n *Node) FreshGet(ctx context.Context, key string, timeout time.Duration) (FreshResult, error) {
	if err := store.ValidateKey(key); err != nil {
		return FreshResult{}, err
	}
	if timeout <= 0 {
		timeout = n.cfg.QueryTimeout
	}
	id, q := n.queries.open()
	defer n.queries.close(id)
	n.stats.queries.Add(1)
	query, err := n.query(id, key)
	if err != nil {
		return FreshResult{}, err
	}
	answers, alive, asked, err := n.ask(ctx, q, query, timeout)
	if err != nil {
		return FreshResult{}, err
	}
	local, found, err := n.st.Peek(key)
	if err != nil {
		return FreshResult{}, err
	}
	cands, complete := n.candidates(ctx, key, local, found, answers)
	res := FreshResult{Answered: len(answers) + 1, Alive: alive + 1, Asked: asked + 1}
	if len(cands) == 0 {
		return res, nil
	}
	rec, pushable := n.settle(ctx, key, local, found, cands)
	if rec.Key == "" {
		return res, nil // every newer answer was a deleted value coming back
	}
	if rec, found = n.lifetime(rec); !found {
		return res, nil // expired here
	}
	res.Record, res.Found = rec, true
	if pushable {
		res.Repaired = n.readRepair(rec, answers, complete)
	}
	return res, nil
}

// ask sends query and collects the answers: from the key's witnesses
// alone when readWitnesses allows, escalating to every node when one of
// them is silent at the first resend; else from every node. alive counts
// the other members alive (or answering), asked the other nodes asked.
func (n *Node) ask(ctx context.Context, q *pendingQuery, query *wire.Query, timeout time.Duration) (answers map[store.NodeID]answer, alive, asked int, err error) {
	start := time.Now()
	if wits, others, ok := n.readWitnesses(query.Key); ok {
		answers, err := n.awaitWitnesses(ctx, q, query, wits, timeout)
		if err != nil || answers != nil {
			n.stats.freshWitness.Add(1)
			return answers, others, len(wits), err
		}
		n.stats.freshEscalated.Add(1)
	} else {
		n.stats.freshAll.Add(1)
	}
	n.broadcast(query)
	answers, alive, err = n.awaitAnswers(ctx, q, query, timeout-time.Since(start))
	return answers, alive, alive, err
}

// readWitnesses returns the witnesses of key other than this node, when a
// fresh read may ask them alone (docs/PROTOCOL.md, Fresh reads): witnesses
// are on, this node has heard a full round and is not bootstrapping, there
// are more nodes than witnesses, and the member table is settled
// (members.witnessView).
// others counts the other members alive.
func (n *Node) readWitnesses(key string) (wits []Member, others int, ok bool) {
	r := n.cfg.FreshWitnesses
	if r <= 0 || !n.heardRound() || n.sync.bootstrapping() {
		return nil, 0, false // a bootstrapping node's own copy may lack the write
	}
	alive, settled := n.members.witnessView(time.Now(), r)
	if !settled || len(alive)+1 <= r {
		return nil, 0, false
	}
	ids := make([]store.NodeID, 0, len(alive)+1)
	for _, m := range alive {
		ids = append(ids, m.ID)
	}
	top := witnessesOf(store.KeyHash(key), append(ids, n.id), r)
	for _, m := range alive {
		if slices.Contains(top, m.ID) {
			wits = append(wits, m)
		}
	}
	return wits, len(alive), true
}

// awaitWitnesses sends query to wits and waits until each answered. It
// returns nil answers (escalate: ask everyone) when one is still silent at
// the first resend, timeout/(queryResends+1): lost, slow or down, and
// whether it acknowledged a write that its writer or another node holds
// only everyone can tell.
func (n *Node) awaitWitnesses(ctx context.Context, q *pendingQuery, query *wire.Query, wits []Member, timeout time.Duration) (map[store.NodeID]answer, error) {
	// One frame for all, as a broadcast: each witness sees its counter once.
	b, err := n.encode(query)
	if err != nil {
		return nil, err
	}
	for _, m := range wits {
		n.send(m.Addr, b)
	}
	first := time.NewTimer(max(timeout/(queryResends+1), time.Millisecond))
	defer first.Stop()
	for {
		if len(n.queries.silent(q, wits)) == 0 {
			return n.queries.snapshot(q), nil
		}
		select {
		case <-q.kick:
		case <-first.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// query is the QUERY for key, with the version this node holds when the
// QUERY still fits a datagram with it (a version vector of many writers
// may not): peers that hold nothing newer then answer with their version
// only.
func (n *Node) query(id uint64, key string) (*wire.Query, error) {
	q := &wire.Query{ID: id, Key: key}
	v, found, err := n.st.PeekVersion(key)
	if err != nil || !found {
		return q, err
	}
	vv, h := v.Record.VV, v.Hash
	q.HaveVV, q.HaveHash = vv, &h
	// A vv entry takes at most 27 bytes (a 16-byte id, a uint64, their
	// heads); the envelope, a seal and the other fields well under 256.
	// Only a QUERY that might not fit is encoded to find out.
	if len(key)+32*len(vv)+256 <= n.cfg.MaxDatagram {
		return q, nil
	}
	if b, err := n.encode(q); err != nil || len(b) > n.cfg.MaxDatagram {
		q.HaveVV, q.HaveHash = nil, nil
	}
	return q, nil
}

// coverWait is how many overdue members a fresh read may leave unheard:
// a write acknowledged with --wait 1 or more is held by its writer and at
// least one peer, so a read that heard from every alive member but one has
// heard from a holder of every such write (docs/ARCHITECTURE.md, Fresh
// reads at scale).
const coverWait = 1

// awaitAnswers waits for every alive member's answer, or timeout, asking
// again those that have not answered a few times on the way. It stops
// early when at most coverWait alive members are silent and each is
// overdue (members.overdue: probably down, not yet suspect — which, with
// heartbeats stretched in a large cluster, can take many seconds, every
// fresh read meanwhile waiting its whole timeout). alive counts the other
// members alive at the end or answering.
func (n *Node) awaitAnswers(ctx context.Context, q *pendingQuery, query *wire.Query, timeout time.Duration) (map[store.NodeID]answer, int, error) {
	waitFull := !n.heardRound()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	resend := time.NewTicker(max(timeout/(queryResends+1), time.Millisecond))
	defer resend.Stop()
	// Counted against the members alive when the read began (and at each
	// resend), not listed again per answer: a hundred answers would each
	// sort the member table.
	alive := n.members.alive(time.Now())
	for {
		silent := n.queries.silent(q, alive)
		if !waitFull && (len(silent) == 0 || len(silent) <= coverWait && n.members.overdue(silent, time.Now())) {
			answers := n.queries.snapshot(q)
			return answers, len(answers) + len(silent), nil
		}
		select {
		case <-q.kick:
		case <-resend.C:
			alive = n.members.alive(time.Now())
			for _, m := range n.queries.silent(q, alive) {
				n.sendTo(m.Addr, query)
			}
		case <-deadline.C:
			answers := n.queries.snapshot(q)
			return answers, len(answers) + len(n.missing(answers)), nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// missing returns the alive members that have not answered.
func (n *Node) missing(answers map[store.NodeID]answer) []Member {
	var out []Member
	for _, m := range n.members.alive(time.Now()) {
		if _, ok := answers[m.ID]; !ok {
			out = append(out, m)
		}
	}
	return out
}

// candidates gathers the versions to compare: the local one, those the
// answers carried, and — for answers too large to carry their record that
// might be newer than what is known — the record fetched from their
// sender. complete is false when such a fetch failed: then the result may
// not be newer than that node's, and it is not repaired.
func (n *Node) candidates(ctx context.Context, key string, local store.Record, found bool, answers map[store.NodeID]answer) (cands []store.Record, complete map[store.NodeID]bool) {
	if found {
		cands = append(cands, local)
	}
	var large []store.NodeID
	complete = map[store.NodeID]bool{}
	for id, a := range answers {
		complete[id] = true
		switch {
		case !a.msg.Found:
		case a.msg.Record != nil:
			cands = append(cands, *a.msg.Record)
		default:
			large = append(large, id)
		}
	}
	var toFetch []store.NodeID
	if len(large) > 0 {
		// Hashed once here, not once per answer: at 40 nodes most answers
		// are versions only, each compared with every candidate.
		hashes := make([]store.Hash, len(cands))
		for i := range cands {
			hashes[i] = cands[i].Hash()
		}
		for _, id := range large {
			if !known(cands, hashes, answers[id].msg) {
				toFetch = append(toFetch, id)
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range toFetch {
		a := answers[id]
		wg.Go(func() {
			rec, ok := n.fetch(ctx, a.from, key)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				cands = append(cands, rec)
			} else {
				complete[id] = false
			}
		})
	}
	wg.Wait()
	return cands, complete
}

// known reports whether an answer's version is among cands (whose hashes
// are hashes), or older than one of them: then its record is not needed.
func known(cands []store.Record, hashes []store.Hash, a *wire.Answer) bool {
	for i := range cands {
		c := &cands[i]
		if hashes[i] == a.Hash || c.VV.Dominates(a.VV) && !a.VV.Dominates(c.VV) {
			return true
		}
	}
	return false
}

// settle stores the newest of cands here and returns it as the store then
// holds it. Concurrent maxima are each applied, so that the store resolves
// them (with the conflict hook) exactly as replication would. pushable is
// false when the store could not take them (a full disk): the result is
// then computed here without the hook, good for this answer only.
func (n *Node) settle(ctx context.Context, key string, local store.Record, found bool, cands []store.Record) (rec store.Record, pushable bool) {
	top := maxima(cands)
	var lh store.Hash
	if found {
		lh = local.Hash()
	}
	held, stored, failed := local, false, false
	for i := range top {
		if found && top[i].Hash() == lh {
			continue // the local copy is one of the newest: nothing to store
		}
		r, err := n.applyResult(ctx, top[i])
		if err != nil {
			failed = true
			continue
		}
		held, stored = r.Record, true
	}
	switch {
	case !failed:
		// held.Key is empty when the newest answers were deleted values
		// coming back, which the store dropped (store.Dropped): then
		// nothing is held.
		return held, true
	case len(top) == 1:
		return top[0], true // a peer's record, as it holds it
	case stored:
		return held, false
	}
	return store.Resolve(key, &top[0], &top[1], nil), false
}

// maxima returns the versions among recs that no other is newer than: one
// record, or several concurrent ones.
func maxima(recs []store.Record) []store.Record {
	var top []store.Record
next:
	for _, r := range recs {
		kept := top[:0]
		for i := range top {
			switch store.Compare(&top[i], &r) {
			case store.Newer, store.Same:
				continue next
			case store.Concurrent:
				kept = append(kept, top[i])
			}
		}
		top = append(kept, r)
	}
	return top
}

// readRepair pushes rec to every answerer whose version differed, except
// those whose record could not be fetched (they may hold something newer).
func (n *Node) readRepair(rec store.Record, answers map[store.NodeID]answer, complete map[store.NodeID]bool) int {
	h := rec.Hash()
	var msg wire.Message
	repaired := 0
	for id, a := range answers {
		if a.msg.Found && a.msg.Hash == h || !complete[id] {
			continue
		}
		if msg == nil {
			msg = n.updateFor(rec, wire.AckRequest{NoAck: true}) // nobody waits for a repair
		}
		n.sendTo(a.from, msg)
		repaired++
	}
	n.stats.readRepairs.Add(uint64(repaired))
	return repaired
}
