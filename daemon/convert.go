package daemon

import (
	"fmt"
	"sync/atomic"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// lastName is the hex of the last origin toRPC showed: most answers show
// this node's own writes, so one string serves them all.
var lastName atomic.Pointer[namedID]

type namedID struct {
	id   store.NodeID
	name string
}

// nodeName is id.String(), made once for the origin met most.
func nodeName(id store.NodeID) string {
	if n := lastName.Load(); n != nil && n.id == id {
		return n.name
	}
	n := &namedID{id: id, name: id.String()}
	lastName.Store(n)
	return n.name
}

// toRPC shows a store record in the API's shape. withValue false leaves the
// value out (key listings).
func toRPC(r store.Record, withValue bool) rpc.Record {
	// The origin is usually the only vv entry and the lww origin too: its
	// hex is made once (every answer to a get or set comes through here).
	origin := nodeName(r.Origin)
	name := func(id store.NodeID) string {
		if id == r.Origin {
			return origin
		}
		return id.String()
	}
	vv := make(map[string]uint64, len(r.VV))
	for id, l := range r.VV {
		vv[name(id)] = l
	}
	out := rpc.Record{
		Key:      r.Key,
		Version:  r.Lamport,
		Origin:   origin,
		VV:       vv,
		Deleted:  r.Deleted,
		LWW:      &rpc.Stamp{Lamport: r.LWW.Lamport, Origin: name(r.LWW.Origin)},
		At:       r.At,
		Fallback: r.Fallback,
	}
	if r.TTL > 0 && !r.Deleted {
		out.TTLMS, out.TTLRemainingMS = r.TTL, r.Left
	}
	out.Ephemeral = r.Ephemeral
	if withValue {
		out.Value = r.Value
	}
	return out
}

// fromRPC rebuilds a whole store record from an exported one.
func fromRPC(r rpc.Record) (store.Record, error) {
	origin, err := store.ParseNodeID(r.Origin)
	if err != nil {
		return store.Record{}, fmt.Errorf("origin: %w", err)
	}
	vv := make(store.VV, len(r.VV))
	for s, l := range r.VV {
		id, err := store.ParseNodeID(s)
		if err != nil {
			return store.Record{}, fmt.Errorf("vv: %w", err)
		}
		vv[id] = l
	}
	if len(vv) == 0 || r.Version == 0 {
		return store.Record{}, fmt.Errorf("a restored record needs its version and vv (use --as-new to write plain values)")
	}
	lww := store.Stamp{Lamport: r.Version, Origin: origin}
	if r.LWW != nil {
		id, err := store.ParseNodeID(r.LWW.Origin)
		if err != nil {
			return store.Record{}, fmt.Errorf("lww origin: %w", err)
		}
		lww = store.Stamp{Lamport: r.LWW.Lamport, Origin: id}
	}
	left := r.TTLRemainingMS
	if left == 0 {
		left = r.TTLMS // a hand-made line: its whole life (docs/ARCHITECTURE.md, "Expiring and ephemeral keys")
	}
	return store.Record{
		Key: r.Key, Value: r.Value, Deleted: r.Deleted, VV: vv, Lamport: r.Version,
		Origin: origin, LWW: lww, At: r.At, Fallback: r.Fallback, TTL: r.TTLMS, Left: left,
		Ephemeral: r.Ephemeral,
	}, nil
}
