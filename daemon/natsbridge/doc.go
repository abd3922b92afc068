// Package natsbridge connects a ckd node to NATS (docs/PROTOCOL.md, NATS bridge).
//
// Outbound, it publishes the node's changes: each change of key k goes to
// <prefix>.kv.<SubjectKey(k)> with the headers Ck-Key, Ck-Op (set|del),
// Ck-Version, Ck-Origin and Nats-Msg-Id = k@version@<first 8 hex digits of
// the record hash>, and the value as payload — headers only, with
// Ck-Truncated: true, when they would not fit the server's max payload.
// publish = "local" sends the changes whose record's origin is this node
// (each change once per cluster, conflict resolutions included); "all"
// every change applied here (then each node sends each change, and the
// common Nats-Msg-Id lets a JetStream stream keep one); "off" none.
//
// Inbound, with subscribe, it takes writes from <prefix>.set.<subject key>
// and <prefix>.del.<subject key> through the daemon's write path and
// answers requests with the API's JSON.
//
// NATS being down never blocks or fails a write or a read: the bridge
// follows the store's change log on its own goroutines, connects lazily,
// reconnects forever, keeps up to buffer_bytes of messages while
// disconnected and counts exactly what it had to drop (see publish.go for
// how messages are confirmed, and Stats for the accounting).
//
// The daemon wires it as:
//
//	b, err := natsbridge.New(cfg, store, backend, log.Named("nats"))
//	go b.Run(ctx)        // returns after ctx ends and the bridge drained
//	b.State(), b.Stats() // for status and metrics; b.Collector() for Prometheus
//
// Caveats. Only changes committed while the bridge runs are published (no
// replay across restarts). NATS header values are trimmed of white space at
// both ends, so for a key that starts or ends with a space the subject, not
// Ck-Key, is exact. A message lost to a broken connection is resent, so a
// plain subscriber may see a duplicate around a reconnect (same
// Nats-Msg-Id); JetStream's duplicate window removes it.
package natsbridge
