package natsbridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/store"
)

// TestJetStreamDeduplicates: two nodes with publish = "all" both publish
// each change, with the same Nats-Msg-Id; a stream on <prefix>.kv.> with a
// duplicate window keeps one copy.
func TestJetStreamDeduplicates(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "CK", Subjects: []string{"ck.kv.>"}, Duplicates: time.Minute, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	plain := collect(t, nc, "ck.kv.>")
	a, b := openStore(t), openStore(t)
	var bridges []*natsbridge.Bridge
	for _, st := range []*store.Store{a, b} {
		br, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}, Publish: "all"}, st, nil)
		waitState(t, br, "connected")
		bridges = append(bridges, br)
	}
	const n = 20
	for i := range n {
		rec, err := a.Set(ctx, key(i), []byte(fmt.Sprint("v", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Apply(ctx, rec); err != nil { // replication, by hand
			t.Fatal(err)
		}
	}
	plain.waitN(t, 2*n) // each change from both nodes
	for _, br := range bridges {
		settled(t, br, n)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != n {
			return fmt.Errorf("stream holds %d messages, want %d", info.State.Msgs, n)
		}
		return nil
	})
	if u := plain.unique(); u != n {
		t.Errorf("%d distinct Nats-Msg-Ids, want %d", u, n)
	}
}
