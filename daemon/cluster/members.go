package cluster

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// State is a member's state as this node sees it.
type State string

// Member states (docs/PROTOCOL.md, Membership).
const (
	Alive       State = "alive"
	Suspect     State = "suspect"     // unheard for 3 of its heartbeats
	Gone        State = "gone"        // unheard for dead_after, in its heartbeats
	Left        State = "left"        // said BYE
	Quarantined State = "quarantined" // met again after too long apart (docs/PROTOCOL.md, Long separations)
)

// Member is one row of the member table.
type Member struct {
	ID        store.NodeID
	Name      string
	Addr      netip.AddrPort // advertised unicast address
	State     State
	Epoch     uint64
	Keys      uint64
	Lamport   uint64
	Root      [32]byte
	LastHeard time.Time
	Self      bool
	Syncing   bool // still bootstrapping, by its last HELLO
	// Interval is the member's heartbeat as its last HELLO announced it
	// (stretched in a large cluster); 0 when it announces none (a node
	// written before the field), which counts as this node's heartbeat.
	Interval time.Duration
	// Witnesses is the member's fresh_witnesses as its last HELLO
	// announced it; 0: off, or a node written before the field.
	Witnesses int
}

type member struct {
	Member
	left       bool
	firstHeard time.Time // when this boot of the member was first heard
	// wasGone: heard (which runs before hello for every message) found
	// the member gone; hello, which then sees a fresh LastHeard, still
	// treats the HELLO as a return.
	wasGone bool
	// changed is when the member last joined, came back from suspect or
	// gone, or left: with the times it turned suspect or gone, what tells
	// whether the member table is settled (witnessView).
	changed time.Time
}

// maxStretch bounds how far a member's announced heartbeat may stretch
// the time it is counted alive: a peer announcing an hour is still
// suspected within 3 × maxStretch of our heartbeats.
const maxStretch = 64

// members is the member table: every node heard since start.
type members struct {
	mu        sync.Mutex
	m         map[store.NodeID]*member
	heartbeat time.Duration
	deadAfter time.Duration
	// quarantined reports whether the node holds a member in quarantine:
	// such a member shows as Quarantined rather than alive or suspect.
	// Called under mu; it must not call back into members.
	quarantined func(store.NodeID) bool
}

func newMembers(heartbeat, deadAfter time.Duration) *members {
	return &members{m: map[store.NodeID]*member{}, heartbeat: heartbeat, deadAfter: deadAfter}
}

// hello records a HELLO. isNew is true for a member first heard, or heard
// again after it left, went gone or restarted. It returns ok false for a
// HELLO older than what we know of that node (a replay of an earlier boot).
func (ms *members) hello(h *wire.Hello, addr netip.AddrPort, now time.Time) (m Member, isNew bool, ok bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	cur := ms.m[h.ID]
	if cur != nil && h.Epoch < cur.Epoch {
		return cur.Member, false, false
	}
	if cur == nil {
		cur = &member{}
		ms.m[h.ID] = cur
		isNew = true
	}
	// A new boot counts as a return, even within dead_after: it is a
	// starting node, which wants to hear its peers at once.
	returned := cur.left || cur.wasGone || ms.stateLocked(cur, now) == Gone || !isNew && h.Epoch != cur.Epoch
	cur.wasGone = false
	if isNew || returned {
		cur.firstHeard, cur.changed = now, now
	}
	cur.ID, cur.Name, cur.Addr, cur.Epoch = h.ID, h.Name, addr, h.Epoch
	cur.Keys, cur.Lamport, cur.Root, cur.LastHeard = h.Keys, h.Lamport, h.Root, now
	cur.Syncing = h.Syncing
	cur.Interval = time.Duration(h.Interval) * time.Millisecond
	cur.Witnesses = int(h.Witnesses)
	cur.left = false
	return cur.Member, isNew || returned, true
}

// bye marks a member as left, unless the BYE is from an older boot. It
// returns the member, and whether this BYE is news (a leaving node's BYE
// may arrive twice: by the group and to its unicast peers).
func (ms *members) bye(id store.NodeID, epoch uint64, now time.Time) (Member, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	cur := ms.m[id]
	if cur == nil || epoch < cur.Epoch {
		return Member{}, false
	}
	news := !cur.left || epoch > cur.Epoch
	cur.left = true
	cur.LastHeard = now
	if news {
		cur.changed = now
	}
	return cur.Member, news
}

// heard refreshes a member's last-heard time on any valid message. It
// reports whether the member was suspect or gone until now.
func (ms *members) heard(id store.NodeID, now time.Time) (back bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	cur := ms.m[id]
	if cur == nil || cur.left {
		return false
	}
	age := now.Sub(cur.LastHeard)
	hb := ms.period(cur)
	back = age >= 3*hb
	cur.wasGone = cur.wasGone || age >= ms.gone(hb)
	cur.LastHeard = now
	if back {
		cur.changed = now
	}
	return back
}

// period is the heartbeat m is judged by: the one it announced, at least
// ours and at most maxStretch of ours (docs/ARCHITECTURE.md, Heartbeats
// at scale). Suspect and gone are counted in it, so a member whose
// heartbeat stretches with the cluster is not suspected for it.
func (ms *members) period(m *member) time.Duration {
	return min(max(m.Interval, ms.heartbeat), maxStretch*ms.heartbeat)
}

// gone is dead_after in heartbeats of length hb rather than ours.
func (ms *members) gone(hb time.Duration) time.Duration {
	if hb == ms.heartbeat || ms.heartbeat <= 0 {
		return ms.deadAfter
	}
	return time.Duration(float64(ms.deadAfter) * float64(hb) / float64(ms.heartbeat))
}

func (ms *members) stateLocked(m *member, now time.Time) State {
	hb := ms.period(m)
	switch age := now.Sub(m.LastHeard); {
	case m.left:
		return Left
	case age >= ms.gone(hb):
		return Gone
	case ms.quarantined != nil && ms.quarantined(m.ID):
		return Quarantined
	case age >= 3*hb:
		return Suspect
	default:
		return Alive
	}
}

// overdue reports whether every member of ms has been unheard for 2 of
// its heartbeats: a HELLO lost, or more likely the member down, a
// heartbeat before it turns suspect.
func (ms *members) overdue(list []Member, now time.Time) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, m := range list {
		cur := ms.m[m.ID]
		if cur == nil || now.Sub(cur.LastHeard) < 2*ms.period(cur) {
			return false
		}
	}
	return true
}

// settleIntervals is how many of the cluster's heartbeats (interval) the
// member table must go without a change before a fresh read asks only a
// key's witnesses: long enough for every member to have heard of the
// change, so that a writer and a reader most likely see one alive set.
const settleIntervals = 3

// witnessView returns the members alive now, and whether a fresh read may
// ask only a key's witnesses among them and this node (docs/PROTOCOL.md,
// Fresh reads): the table is settled — no member suspect, quarantined or
// bootstrapping, none joined, back, left or gone within settleIntervals
// of the cluster's heartbeat — and every alive member advertises a
// witness count in [1, r], so that a writer's witnesses are among this
// node's.
func (ms *members) witnessView(now time.Time, r int) (alive []Member, settled bool) {
	window := settleIntervals * ms.interval(now)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	alive, settled = make([]Member, 0, len(ms.m)), true
	for _, m := range ms.m {
		s := ms.stateLocked(m, now)
		switch s {
		case Alive:
			c := m.Member
			c.State = Alive
			alive = append(alive, c)
			// A bootstrapping member lacks what it has not pulled yet: as
			// a witness, it would answer for writes it never saw.
			settled = settled && m.Witnesses >= 1 && m.Witnesses <= r && !m.Syncing
		case Suspect, Quarantined:
			settled = false
		case Gone:
			// When it turned gone, by the same clock stateLocked uses.
			if now.Sub(m.LastHeard.Add(ms.gone(ms.period(m)))) < window {
				settled = false
			}
		}
		if now.Sub(m.changed) < window {
			settled = false
		}
	}
	return alive, settled
}

// list returns the members sorted by name then id, states as of now.
func (ms *members) list(now time.Time) []Member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]Member, 0, len(ms.m))
	for _, m := range ms.m {
		c := m.Member
		c.State = ms.stateLocked(m, now)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return a.ID.Compare(b.ID)
	})
	return out
}

// alive returns the members that count as alive now (suspect ones do not).
func (ms *members) alive(now time.Time) []Member {
	var out []Member
	for _, m := range ms.list(now) {
		if m.State == Alive {
			out = append(out, m)
		}
	}
	return out
}

// countAlive is len(alive(now)) without building the list: a replicated
// write asks it several times.
func (ms *members) countAlive(now time.Time) int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	n := 0
	for _, m := range ms.m {
		if ms.stateLocked(m, now) == Alive {
			n++
		}
	}
	return n
}

// aliveIDs appends the ids of the members alive now to ids, in no
// particular order, without copying their rows (askAcks).
func (ms *members) aliveIDs(now time.Time, ids []store.NodeID) []store.NodeID {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, m := range ms.m {
		if ms.stateLocked(m, now) == Alive {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// get returns one member.
func (ms *members) get(id store.NodeID) (Member, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.m[id]
	if !ok {
		return Member{}, false
	}
	return m.Member, true
}

// byFirstHeard returns the alive members in the order they were first
// heard (this boot of each): a bootstrap tries them in that order.
func (ms *members) byFirstHeard(now time.Time) []Member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var ms2 []*member
	for _, m := range ms.m {
		if ms.stateLocked(m, now) == Alive {
			ms2 = append(ms2, m)
		}
	}
	slices.SortFunc(ms2, func(a, b *member) int {
		if c := a.firstHeard.Compare(b.firstHeard); c != 0 {
			return c
		}
		return a.ID.Compare(b.ID)
	})
	out := make([]Member, len(ms2))
	for i, m := range ms2 {
		out[i] = m.Member
		out[i].State = Alive
	}
	return out
}

// live reports whether member id runs in boot epoch and is alive or
// suspect now (ephemeral records, Node.OwnerLive).
func (ms *members) live(id store.NodeID, epoch uint64, now time.Time) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.m[id]
	if m == nil || m.Epoch != epoch {
		return false
	}
	s := ms.stateLocked(m, now)
	return s == Alive || s == Suspect
}

// helloBudget is how many HELLOs a node may receive a second, idle, in a
// large cluster: each node's heartbeat stretches to heartbeat × n/helloBudget
// for n members (itself included), so that n−1 peers send it about
// helloBudget a second together (docs/ARCHITECTURE.md, Heartbeats at scale).
const helloBudget = 16

// interval is this node's heartbeat now: the configured one, stretched by
// the number of members alive when there are more than helloBudget — if
// every one of them announces its own heartbeat. A member that announces
// none runs code that judges every peer by its own heartbeat; stretching
// would make this node suspect there, so the cluster keeps the configured
// heartbeat until every member is upgraded.
func (ms *members) interval(now time.Time) time.Duration {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	n := 1 // this node
	for _, m := range ms.m {
		if ms.stateLocked(m, now) != Alive {
			continue
		}
		if m.Interval <= 0 {
			return ms.heartbeat
		}
		n++
	}
	return stretch(ms.heartbeat, n)
}

// stretch is the heartbeat of a node among n members alive.
func stretch(heartbeat time.Duration, n int) time.Duration {
	if n <= helloBudget {
		return heartbeat
	}
	return min(heartbeat*time.Duration(n)/helloBudget, maxStretch*heartbeat)
}
