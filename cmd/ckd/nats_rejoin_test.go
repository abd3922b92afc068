package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/rpc"
)

// TestNATSRejoin: ckctl rejoin on a node of a cluster on the nats
// transport (whose nats block also runs the bridge): after a separation
// longer than purge_log_ttl both sides quarantine each other; a rejoin on
// the stale side moves its data aside, pulls the cluster's, re-applies its
// own writes, and its bridge runs again on the fresh store — connected,
// publishing the node's new writes under its new id.
func TestNATSRejoin(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	ns := startNATSServer(t)

	dir := t.TempDir()
	cfg := natsClusterConfig(t, dir, fmt.Sprintf("natsr-%08x", r.Uint32()), ns.ClientURL(),
		`tombstone_ttl = "2s"`, `purge_log_ttl = "3s"`)
	_, b, ca, cb := quarantinedPair(t, dir, cfg, 4*time.Second) // longer than purge_log_ttl
	b.mustCkctl(t, "", "set", "mine/b", "y")

	out := b.mustCkctl(t, "", "rejoin")
	if !strings.Contains(out, "rejoined as") || !strings.Contains(out, "re-applied 1 of this node's writes") {
		t.Fatalf("ckctl rejoin: %s", out)
	}
	natsAwaitValue(t, cb, "during/a", "x")
	natsAwaitValue(t, ca, "mine/b", "y")
	awaitAlive(t, []*rpc.Client{ca, cb}, 2)

	st, err := cb.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the bridge after the rejoin", func() error {
		if st.NATS != "connected" {
			st, _ = cb.Status(context.Background())
		}
		if st.NATS != "connected" {
			return fmt.Errorf("%q, want connected", st.NATS)
		}
		return nil
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("ck.kv.after")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	b.mustCkctl(t, "", "set", "after", "z")
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("a write after the rejoin was not published: %v", err)
	}
	if string(msg.Data) != "z" || msg.Header.Get("Ck-Origin") != st.ID {
		t.Errorf("published %q with origin %q; want z from the new id %s", msg.Data, msg.Header.Get("Ck-Origin"), st.ID)
	}
}

// awaitState polls c's member table (at most 20 s) until the member named
// name shows state.
func awaitState(t *testing.T, c *rpc.Client, name, state string) {
	t.Helper()
	eventually(t, 20*time.Second, c.Socket(), memberIs(c, name, state))
}
