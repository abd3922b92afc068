// Package limits is the one home of the limits and defaults that several
// packages must agree on (the store, the API server, the Lua engine, the
// protocol and the config), so that none of them can drift. Each package
// re-exports what its own API documents, as an alias of these.
package limits

import "time"

const (
	// DefaultMaxValueSize is max_value_size's default: the largest value
	// accepted, in bytes.
	DefaultMaxValueSize = 4 << 20
	// MaxMaxValueSize is the largest max_value_size may be.
	MaxMaxValueSize = 64 << 20
	// DefaultPurgeLogTTL is purge_log_ttl's default: how long a purged
	// tombstone is remembered, and how long a peer may be away before it
	// is quarantined (docs/PROTOCOL.md, Tombstones and the purge log).
	DefaultPurgeLogTTL = 720 * time.Hour
)
