package cluster

import (
	"time"

	"github.com/cloudknowledge/ck/store"
)

// Records with a TTL (docs/ARCHITECTURE.md, "Expiring and ephemeral
// keys"): the store keeps each node's own deadline and fills
// store.Record.Left on reads; package wire carries Left with every record
// a message holds. Peers read with Peek, so that a record expired here is
// still sent — with Left 0 — and a node lacking it stores the same bytes,
// hidden: expiries cost no anti-entropy traffic. What remains here is the
// reader's side of a fresh read and the age of a resent UPDATE.

// lifetime decides whether a fresh read's result is live here: a record
// this node holds and has expired stays hidden whatever another node
// answered, and its Left is this node's when that is shorter; an
// ephemeral record shows only while its owner's boot is live here.
func (n *Node) lifetime(rec store.Record) (store.Record, bool) {
	if rec.Ephemeral != 0 && !rec.Deleted {
		return rec, n.OwnerLive(rec.Origin, rec.Ephemeral)
	}
	if rec.TTL <= 0 || rec.Deleted {
		return rec, true
	}
	if cur, found, err := n.st.Peek(rec.Key); err == nil && found && cur.Hash() == rec.Hash() {
		rec.Left = min(rec.Left, cur.Left)
	}
	return rec, rec.Left > 0
}

// aged is rec as resent d after it was first sent: its Left less d, so a
// receiver that missed the first UPDATE gives it no longer life.
func aged(rec store.Record, d time.Duration) store.Record {
	rec.Left = max(0, rec.Left-d.Milliseconds())
	return rec
}

// OwnerLive reports whether owner's boot epoch runs and is reachable as
// this node sees it — alive or suspect in that epoch, not gone, left,
// quarantined or restarted — which is when its ephemeral records show
// here (store.Liveness).
func (n *Node) OwnerLive(owner store.NodeID, epoch uint64) bool {
	if owner == n.id {
		return epoch == n.cfg.Epoch
	}
	return n.members.live(owner, epoch, time.Now())
}
