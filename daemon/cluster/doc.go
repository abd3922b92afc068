// Package cluster is the protocol between ckd nodes (docs/PROTOCOL.md): a Node
// says HELLO, keeps the member table, replicates local writes, answers and
// asks fresh reads, keeps its store in sync with its peers' and pulls a
// copy of the data when it starts. It sees the network only through
// transport.Transport and the data only through the Store interface, so the
// simulated network of the tests runs whole clusters in one process on
// virtual time. The daemon creates a Node, runs it, and calls Replicate,
// WaitAcks, FreshGet, Sync, Members and, after a long separation, Trust.
//
// # Membership
//
// Every heartbeat each node broadcasts HELLO (its id, boot epoch, address,
// clock, key count, digest root, whether it is still bootstrapping, and
// its heartbeat, which stretches beyond 16 members so that each node
// receives about 16 HELLOs a second whatever the cluster's size:
// members.interval). A member unheard for 3 of its heartbeats is suspect,
// for dead_after (counted in its heartbeats) gone; BYE makes it left. A
// node answers a HELLO from a member it did not know (or that restarted),
// and the first message of a member back from suspect or gone, with its
// own HELLO, unicast and at once, so that a starting node knows its peers
// within a round trip and a healed partition is seen from both sides; at
// rest the cost stays one HELLO per node per heartbeat, whatever the
// number of keys. A HELLO
// carrying this node's own id and a newer boot epoch means another process
// runs on a copy of its data dir: Run stops with ErrDuplicateID.
//
// # Replication
//
// A local write goes out as UPDATE (ANNOUNCE, then a FETCH over a stream,
// when it does not fit max_datagram). Receivers apply it — newer is
// stored, concurrent is resolved, older is ignored, so duplicates and
// reorderings change nothing — and ACK once they hold it or a descendant
// durably, if the UPDATE asks them to: a write nobody waits for asks
// nobody, a waiting one a few peers (askAcks), so that a writer's fan-in
// does not grow with the cluster. ACKs owed to one writer at the same
// moment share a datagram (acker). WaitAcks resends, asking more peers
// each time, until enough distinct peers have answered.
//
// # Fresh reads
//
// FreshGet sends QUERY, with the version the asker holds, to the key's
// witnesses (witness.go) while the member table is settled, else to every
// node, and collects one ANSWER per node asked (version and hash, and the
// record when the asker may lack it and it fits a datagram; otherwise the
// asker fetches it over a stream if it may be newer than what it knows).
// A witness silent at the first resend makes it ask every node. Asking
// every node, it asks the silent alive members again a few times within
// query_timeout, and returns as soon as every alive member answered, or
// all but one that is overdue
// (unheard for 2 of its heartbeats) — or, on a node up for less than a
// heartbeat, which may not know every member yet, after the whole timeout. The newest versions are applied to the local store,
// which resolves concurrent ones exactly as replication would, and the
// result is pushed (an UPDATE, unicast, best effort: anti-entropy catches
// a lost one) to every answerer that held another version.
//
// # Anti-entropy
//
// The store keeps a digest tree: 2^16 leaves (XOR of their records'
// hashes) under 256 top nodes, under a root that travels in HELLO. When a
// peer's root has differed from ours in two consecutive HELLOs (one may
// cross a write in flight; a duplicated datagram is not a second HELLO),
// the node opens a sync session with it: one session of its own at a time,
// at most one per peer per sync_interval (jittered), never with a peer that
// is bootstrapping, and no sooner than its pacing allows: after a session
// that repaired nothing (brought nothing new here older than a heartbeat
// or two), a node waits 1 s, doubling to 60 s, before opening another;
// evidence of a fault (syncer.fault) lifts the wait. A node serves at most
// a few sessions at once and refuses more (SYNC_DONE with Refused).
//
// A session runs over one stream in turns — one side writes, ending with
// SYNC_DONE, while the other only reads — so neither can block on a full
// pipe, and the opener drives it:
//
//	opener                              responder
//	SYNC_TOP (its 256 top digests) ──►
//	                                ◄── SYNC_LEAVES for each differing top node;
//	                                    the records under each top node where
//	                                    the opener holds nothing
//	for each SYNC_LEAVES received, a round:
//	  records asked for last round;
//	  SYNC_KEYS for each differing leaf
//	  (empty if it holds none there), or
//	  the records, where the responder
//	  holds none                     ──►
//	                                ◄── the records the opener lacks or holds
//	                                    under another hash; SYNC_KEYS naming
//	                                    the opener's records it wants
//	records asked for last round     ──►
//	                                ◄── SYNC_DONE: all applied
//
// A key the two sides hold differently travels both ways, so both resolve
// a concurrent pair, identically; an older copy sent is ignored by the
// receiver's apply. Both sides apply what they receive durably before the
// session counts as completed, and record the peer as in sync (LastInSync;
// so does a HELLO carrying our root). The cost follows the difference, not
// the data: two 4 KB digest levels per differing top node, about 34 bytes
// per key in a differing leaf, and the differing records — one differing
// key among 100,000 costs about 9 KB in all.
//
// # Bootstrap
//
// At every start the node is "bootstrapping" (Sync) until it completes a
// session with one peer: the first heard that is not bootstrapping itself
// (or, a heartbeat on, one that is — a whole cluster restarting pulls from
// each other), then the next when a session fails or is refused. Against
// an empty store that session streams every record of the peer's in
// batches of up to 256 KiB, and progress goes to the log. A node that hears
// no peer for a few heartbeats is alone, and synced. Meanwhile it serves
// reads from what has arrived; the daemon marks them Ck-Syncing and
// answers /v1/health with 503.
//
// # Long separations
//
// Each node remembers, per peer and across restarts (a PeerBook), when it
// was last in sync with it. A HELLO from a peer that has not been in sync
// for longer than purge_log_ttl, and whose root differs, quarantines it:
// no session is opened with it or served to it (a session's responder
// applies the rule too, and its refusal says why, so the opener
// quarantines it as well), no bootstrap pulls from it, and its datagrams
// that carry data are dropped; the member table shows it as quarantined
// and the log says so once, at Error level. A HELLO carrying our root
// lifts it (nothing differs), and so does Trust, the operator's word.
// separation.go explains why.
package cluster
