// Package daemon is the ckd node as a library: its configuration (HCL), its
// lifecycle (New, Run, Reload, Close), the local API backend over the store,
// and — as the cluster work lands — the protocol between nodes and its
// transports. cmd/ckd only parses flags, loads the config and calls in here.
//
// A Daemon is created by New, which does everything that can fail on a bad
// environment before anything is served: it opens (and locks) the store,
// compiles the hooks and claims the API socket. Run serves until its context
// ends and then stops gracefully: new writes are refused, in-flight ones
// finish, the API closes, the store is flushed and closed. No write that was
// acknowledged is lost, because every write is acknowledged only once it is
// durable in the store.
//
// Rejoin (rejoin.go) is the one operation that replaces the store and the
// node while the daemon runs; API calls hold a shared lock while they use
// them and are refused with 503 syncing while it runs.
package daemon
