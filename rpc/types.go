package rpc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Stamp is the (lamport, origin) pair that last-writer-wins ranks a record by.
type Stamp struct {
	Lamport uint64 `json:"lamport"`
	Origin  string `json:"origin"`
}

// Record is one key's current version as the API shows it. Value holds the
// raw bytes; in JSON it is a string when the bytes are valid UTF-8, else
// base64 with "encoding":"base64".
//
// Key, Value, Version, Origin, VV and Deleted are the fields README.md documents.
// LWW, At and Fallback complete the record so that export/import carry it
// whole (versions kept).
type Record struct {
	Key      string            `json:"key"`
	Value    []byte            `json:"-"`
	Version  uint64            `json:"version"`
	Origin   string            `json:"origin"`
	VV       map[string]uint64 `json:"vv"`
	Deleted  bool              `json:"deleted"`
	LWW      *Stamp            `json:"lww,omitempty"`
	At       int64             `json:"at,omitempty"` // origin's wall clock at the write, unix ms
	Fallback bool              `json:"fallback,omitempty"`
	// TTLMS is the record's TTL in ms (0: none); TTLRemainingMS what is
	// left of it on the node that answered. An import without
	// ttl_remaining_ms gives the record its whole TTL.
	TTLMS          int64 `json:"ttl_ms,omitempty"`
	TTLRemainingMS int64 `json:"ttl_remaining_ms,omitempty"`
	// Ephemeral is the boot epoch of the node that wrote an ephemeral
	// record (its origin), which it lives as long as; 0: not ephemeral.
	Ephemeral uint64 `json:"ephemeral,omitempty"`
}

type recordJSON struct {
	Key      string            `json:"key"`
	Value    string            `json:"value"`
	Encoding string            `json:"encoding,omitempty"`
	Version  uint64            `json:"version"`
	Origin   string            `json:"origin"`
	VV       map[string]uint64 `json:"vv"`
	Deleted  bool              `json:"deleted"`
	LWW      *Stamp            `json:"lww,omitempty"`
	At       int64             `json:"at,omitempty"`
	Fallback bool              `json:"fallback,omitempty"`
	TTLMS    int64             `json:"ttl_ms,omitempty"`
	TTLLeft  int64             `json:"ttl_remaining_ms,omitempty"`
	Eph      uint64            `json:"ephemeral,omitempty"`
}

// MarshalJSON writes Value as a string, or as base64 when it is not UTF-8.
func (r Record) MarshalJSON() ([]byte, error) {
	return appendRecordJSON(make([]byte, 0, 160+len(r.Key)+len(r.Value)*4/3), &r), nil
}

// marshalReflect is MarshalJSON by encoding/json: the definition
// appendRecordJSON must match.
func (r Record) marshalReflect() ([]byte, error) {
	j := recordJSON{
		Key: r.Key, Version: r.Version, Origin: r.Origin, VV: r.VV,
		Deleted: r.Deleted, LWW: r.LWW, At: r.At, Fallback: r.Fallback,
		TTLMS: r.TTLMS, TTLLeft: r.TTLRemainingMS, Eph: r.Ephemeral,
	}
	if j.VV == nil {
		j.VV = map[string]uint64{}
	}
	if utf8.Valid(r.Value) {
		j.Value = string(r.Value)
	} else {
		j.Value = base64.StdEncoding.EncodeToString(r.Value)
		j.Encoding = "base64"
	}
	return json.Marshal(j)
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (r *Record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Record{
		Key: j.Key, Version: j.Version, Origin: j.Origin, VV: j.VV,
		Deleted: j.Deleted, LWW: j.LWW, At: j.At, Fallback: j.Fallback,
		TTLMS: j.TTLMS, TTLRemainingMS: j.TTLLeft, Ephemeral: j.Eph,
	}
	switch j.Encoding {
	case "":
		r.Value = []byte(j.Value)
	case "base64":
		v, err := base64.StdEncoding.DecodeString(j.Value)
		if err != nil {
			return fmt.Errorf("record %q: bad base64 value: %w", j.Key, err)
		}
		r.Value = v
	default:
		return fmt.Errorf("record %q: unknown value encoding %q", j.Key, j.Encoding)
	}
	return nil
}

// ReadInfo describes how a read was answered. Answered, Alive and Asked are
// set by fresh reads (how many nodes answered, of how many alive, and how
// many were asked: the key's witnesses and the node itself, or every alive
// node; docs/PROTOCOL.md, Fresh reads); Syncing is true while the node is
// still bootstrapping, so the answer may be incomplete. They travel as the
// headers Ck-Answered, Ck-Alive, Ck-Asked and Ck-Syncing. Asked is 0 from
// a daemon that predates it.
type ReadInfo struct {
	Fresh    bool `json:"-"`
	Answered int  `json:"answered,omitempty"`
	Alive    int  `json:"alive,omitempty"`
	Asked    int  `json:"asked,omitempty"`
	Syncing  bool `json:"-"`
}

// GetResponse is the JSON body of GET /v1/kv/{key}: the record, plus the
// answered/alive/asked counts of a fresh read.
type GetResponse struct {
	Record
	Answered int `json:"answered,omitempty"`
	Alive    int `json:"alive,omitempty"`
	Asked    int `json:"asked,omitempty"`
}

// MarshalJSON merges the fresh-read counts into the record object (asked
// only when set).
func (g GetResponse) MarshalJSON() ([]byte, error) {
	b, err := g.Record.MarshalJSON()
	if err != nil || (g.Answered == 0 && g.Alive == 0) {
		return b, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["answered"], m["alive"] = g.Answered, g.Alive
	if g.Asked > 0 {
		m["asked"] = g.Asked
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the record and the fresh-read counts.
func (g *GetResponse) UnmarshalJSON(b []byte) error {
	if err := g.Record.UnmarshalJSON(b); err != nil {
		return err
	}
	var c struct {
		Answered int `json:"answered"`
		Alive    int `json:"alive"`
		Asked    int `json:"asked"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	g.Answered, g.Alive, g.Asked = c.Answered, c.Alive, c.Asked
	return nil
}

// GetOptions are the query flags of GET /v1/kv/{key}.
type GetOptions struct {
	Fresh bool // ?fresh: ask the key's witnesses or every node (docs/PROTOCOL.md, Fresh reads)
}

// WriteOptions are the query parameters of PUT and DELETE /v1/kv/{key}.
type WriteOptions struct {
	// IfVersion, when set, makes the write conditional: it applies only if
	// the local copy's version equals *IfVersion (0: absent or deleted).
	IfVersion *uint64
	// Wait is how many peers must hold the write durably before the call
	// returns; Timeout bounds that wait (0: the default, 5s).
	Wait    int
	Timeout Duration
	// TTL, when set, makes the written record expire that long after the
	// write on every node (?ttl=30s; PUT only; 1 s up to tombstone_ttl).
	TTL Duration
	// Ephemeral makes the written record live as long as this node's
	// current boot runs and is reachable (?ephemeral; PUT only; not with TTL).
	Ephemeral bool
}

// ListOptions are the query parameters of GET /v1/kv.
type ListOptions struct {
	Prefix string
	After  string // return keys strictly after this one (paging)
	Limit  int    // 0: the server's default page size
	Values bool   // include values
}

// ListResponse is one page of keys in byte order, tombstones excluded.
// Next is the key to pass as After for the following page, "" at the end.
type ListResponse struct {
	Items []Record `json:"items"`
	Next  string   `json:"next"`
	// Syncing: the node was still bootstrapping, so the page may lack
	// records the cluster holds (the header Ck-Syncing).
	Syncing bool `json:"-"`
}

// Event is one change in the node's change log, as GET /v1/watch streams it,
// one JSON object a line. Op is "set", "del" or "expire" (a record with a
// TTL reached its deadline on this node).
type Event struct {
	Index   uint64 `json:"index"`
	Op      string `json:"op"`
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Origin  string `json:"origin"`
}

// Member is one row of the member table (GET /v1/members). State is one of
// alive, suspect, gone, left, quarantined.
type Member struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	State       string `json:"state"`
	Keys        uint64 `json:"keys"`
	Lamport     uint64 `json:"lamport"`
	LastHeardMS int64  `json:"last_heard_ms"`
	Self        bool   `json:"self"`
}

// Status describes this node (GET /v1/status).
type Status struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Version    string         `json:"version"` // ckd's version
	Lamport    uint64         `json:"lamport"`
	Keys       uint64         `json:"keys"`
	DigestRoot string         `json:"digest_root"`
	Transport  string         `json:"transport"`
	Address    string         `json:"address"`
	Members    map[string]int `json:"members"` // count by state
	Sync       SyncState      `json:"sync"`
	StoreID    string         `json:"store_id"`
	NATS       string         `json:"nats"` // bridge state: "off", "connected", "disconnected", ...
	// Disk: "ok"; "low" (the space reserve is used up: writes that grow
	// the store are limited); "full" (flushes fail: they are refused).
	Disk    string `json:"disk"`
	DataDir string `json:"data_dir"`
	Socket  string `json:"socket"`
	// KeySource is where the cluster key came from: "config encrypt",
	// "keyring_file PATH", "default key file PATH" or "none (insecure)".
	KeySource string `json:"key_source"`
	UptimeMS  int64  `json:"uptime_ms"`
	// Drops counts cluster datagrams lost at this node before it could
	// handle them (ck_datagrams_dropped_total has them too).
	Drops DatagramDrops `json:"drops"`
}

// DatagramDrops counts cluster datagrams this node lost on its own side.
type DatagramDrops struct {
	Kernel     uint64 `json:"kernel"`      // received, but the socket's buffer was full (SO_RXQ_OVFL)
	QueueFull  uint64 `json:"queue_full"`  // received, but ckd's receive queue was full
	SendBuffer uint64 `json:"send_buffer"` // not sent: the socket's send buffer was full
}

// SyncState tells whether the node has finished its bootstrap.
type SyncState struct {
	State    string `json:"state"` // "synced" or "bootstrapping"
	Peer     string `json:"peer,omitempty"`
	Received uint64 `json:"received,omitempty"`
}

// Health is the body of GET /v1/health.
type Health struct {
	Status string `json:"status"` // "ok"
}

// ImportResult counts what an import did. A failed import's error
// carries it too (Error.Import): what was imported before the failure.
type ImportResult struct {
	Records uint64 `json:"records"` // records imported (stored, or older than the node's and ignored)
	Applied uint64 `json:"applied"` // records that changed the store
	// Line is set on a failed import: the line that stopped it. A record
	// refused (bad JSON, key, value, or refused as hostile) stops it before
	// anything from that line on is applied, so Records are exactly the
	// records of the lines before it.
	Line int `json:"line,omitempty"`
}
