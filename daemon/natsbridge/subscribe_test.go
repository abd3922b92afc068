package natsbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// hookWriter refuses writes under "locked/" the way an on_set hook does,
// and answers writes under "lonely/" as a --wait no peer acknowledged.
type hookWriter struct{ storeWriter }

func (w hookWriter) Put(ctx context.Context, key string, value []byte, opts rpc.WriteOptions) (rpc.Record, error) {
	if strings.HasPrefix(key, "locked/") {
		return rpc.Record{}, rpc.Errorf(rpc.ErrHookRejected, "rejected by hook: %s is locked", key)
	}
	if strings.HasPrefix(key, "lonely/") {
		e := rpc.Errorf(rpc.ErrWaitTimeout, "stored, but only 0 of 2 peers acknowledged")
		e.Acked, e.Wanted = 0, 2
		return rpc.Record{}, e
	}
	return w.storeWriter.Put(ctx, key, value, opts)
}

func request(t *testing.T, nc *nats.Conn, subject string, data []byte) map[string]any {
	t.Helper()
	m, err := nc.Request(subject, data, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var out map[string]any
	if err := json.Unmarshal(m.Data, &out); err != nil {
		t.Fatalf("reply to %s is not JSON: %q", subject, m.Data)
	}
	return out
}

func TestInboundWrites(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	nc := connect(t, srv.ClientURL())
	// The bridge never listens on kv subjects: nobody answers there.
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}, Subscribe: true},
		st, hookWriter{storeWriter{st}})
	waitState(t, b, "connected")
	if _, err := nc.Request("ck.kv.probe", []byte("x"), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request on a kv subject: %v, want no responders", err)
	}
	kv := collect(t, nc, "ck.kv.>")

	key := "app/config file.json"
	got := request(t, nc, "ck.set."+natsbridge.SubjectKey(key), []byte(`{"a":1}`))
	rec, found, err := st.Get(key)
	if err != nil || !found {
		t.Fatalf("set through NATS not stored: %v %v", found, err)
	}
	if got["key"] != key || got["value"] != `{"a":1}` || got["version"] != float64(rec.Lamport) ||
		got["origin"] != st.NodeID().String() || got["deleted"] != false {
		t.Errorf("set reply %v, stored %+v", got, rec)
	}
	checkMessage(t, kv.waitN(t, 1)[0], "ck", rec) // published like any change

	got = request(t, nc, "ck.del."+natsbridge.SubjectKey(key), nil)
	if rec, _, _ = st.Get(key); !rec.Deleted || got["deleted"] != true || got["version"] != float64(rec.Lamport) {
		t.Errorf("del reply %v, stored %+v", got, rec)
	}

	for _, tc := range []struct{ subject, code string }{
		{"ck.set.a.~2E", "bad_request"},      // key "a/.": store.ValidateKey refuses it
		{"ck.set.a~2e", "bad_request"},       // not a subject SubjectKey makes
		{"ck.set.~41", "bad_request"},        // non-canonical escape
		{"ck.set.locked.x", "hook_rejected"}, // the write path's own refusal
		{"ck.del.~00nul", "bad_request"},     // NUL in a key
	} {
		got := request(t, nc, tc.subject, []byte("v"))
		if got["code"] != tc.code || got["error"] == "" || len(got) != 2 {
			t.Errorf("%s: reply %v, want code %s", tc.subject, got, tc.code)
		}
	}

	// A --wait shortfall carries acked, 0 included, as the API's answer does.
	got = request(t, nc, "ck.set.lonely.x", []byte("v"))
	if got["code"] != "wait_timeout" || got["acked"] != float64(0) || got["wanted"] != float64(2) {
		t.Errorf("wait shortfall reply %v, want code wait_timeout, acked 0, wanted 2", got)
	}

	// Without a reply subject the write is applied all the same.
	if err := nc.Publish("ck.set.fire.and.forget", []byte("ff")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if rec, found, _ := st.Get("fire/and/forget"); !found || string(rec.Value) != "ff" {
			return fmt.Errorf("fire-and-forget set not stored")
		}
		return nil
	})
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Received != 9 || s.Writes != 3 || s.WriteErrors != 6 {
			return fmt.Errorf("stats %+v: want 9 received, 3 stored, 6 refused", s)
		}
		return nil
	})
}

// TestQueueGroup: of two nodes subscribed in one queue group, exactly one
// applies each write.
func TestQueueGroup(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.ClientURL())
	var stores []*store.Store
	for range 2 {
		st := openStore(t)
		b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}, Subscribe: true, Publish: "off"},
			st, storeWriter{st})
		waitState(t, b, "connected")
		stores = append(stores, st)
	}
	const n = 200
	for i := range n {
		request(t, nc, "ck.set.q."+fmt.Sprint(i), []byte("v"))
	}
	counts := make([]int, 2)
	for i := range n {
		holders := 0
		for j, st := range stores {
			if _, found, _ := st.Get(fmt.Sprintf("q/%d", i)); found {
				holders++
				counts[j]++
			}
		}
		if holders != 1 {
			t.Fatalf("q/%d stored on %d nodes, want 1", i, holders)
		}
	}
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("the queue group did not spread the writes: %v", counts)
	}
}

// TestInboundWhileDownAtStart: subscriptions made before NATS is reachable
// take effect once it is.
func TestInboundWhileDownAtStart(t *testing.T) {
	srv := startServer(t)
	px := startProxy(t, srv.Addr().String())
	px.down()
	st := openStore(t)
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{px.url()}, Subscribe: true}, st, storeWriter{st})
	px.up()
	waitState(t, b, "connected")
	nc := connect(t, srv.ClientURL())
	var got map[string]any
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		m, err := nc.Request("ck.set.late", []byte("v"), 200*time.Millisecond)
		if err != nil {
			return err
		}
		return json.Unmarshal(m.Data, &got)
	})
	if got["key"] != "late" || got["value"] != "v" {
		t.Errorf("reply %v", got)
	}
}
