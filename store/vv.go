package store

// VV is a version vector: node id → that node's lamport at its latest write
// the record descends from. A missing entry and an entry of 0 mean the same.
// A VV held by a Record is treated as immutable; methods return new maps.
type VV map[NodeID]uint64

// Order is how a relates to b in Compare (and VV.Compare).
type Order int

// Orders. The zero value is none of them, so a forgotten assignment shows.
const (
	Older      Order = iota + 1 // b descends from a
	Same                        // equal
	Newer                       // a descends from b
	Concurrent                  // neither descends from the other
)

func (o Order) String() string {
	switch o {
	case Older:
		return "older"
	case Same:
		return "same"
	case Newer:
		return "newer"
	case Concurrent:
		return "concurrent"
	}
	return "Order(?)"
}

// Clone returns a copy (nil for nil).
func (v VV) Clone() VV {
	if v == nil {
		return nil
	}
	c := make(VV, len(v))
	for id, n := range v {
		c[id] = n
	}
	return c
}

// Merge returns the pointwise maximum of v and o as a new map.
func (v VV) Merge(o VV) VV {
	m := make(VV, max(len(v), len(o)))
	for id, n := range v {
		if n > 0 {
			m[id] = n
		}
	}
	for id, n := range o {
		if n > m[id] {
			m[id] = n
		}
	}
	return m
}

// Dominates reports whether v >= o in every entry (so also when equal).
func (v VV) Dominates(o VV) bool {
	for id, n := range o {
		if v[id] < n {
			return false
		}
	}
	return true
}

// Compare says how v relates to o: Newer (v dominates and differs), Older,
// Same or Concurrent.
func (v VV) Compare(o VV) Order {
	vo, ov := v.Dominates(o), o.Dominates(v)
	switch {
	case vo && ov:
		return Same
	case vo:
		return Newer
	case ov:
		return Older
	}
	return Concurrent
}

// Equal reports whether v and o hold the same non-zero entries.
func (v VV) Equal(o VV) bool { return v.Compare(o) == Same }

// normalized returns v without zero entries (v itself when it has none), so
// that equal vectors encode, and hash, alike.
func (v VV) normalized() VV {
	for _, n := range v {
		if n == 0 {
			m := make(VV, len(v))
			for id, n := range v {
				if n > 0 {
					m[id] = n
				}
			}
			return m
		}
	}
	return v
}
