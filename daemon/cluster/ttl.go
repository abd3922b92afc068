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
// answered, and its Left is this node's when that is shorter.
func (n *Node) lifetime(rec store.Record) (store.Record, bool) {
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
