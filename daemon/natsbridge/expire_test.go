package natsbridge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
)

// TestPublishExpire: a key whose TTL runs out is published as Ck-Op
// expire, with the record's version and origin and no payload.
func TestPublishExpire(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")

	rec, err := st.SetTTL(context.Background(), "lease/a", []byte("holder"), nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	msgs := c.waitN(t, 2)
	set, exp := msgs[0], msgs[1]
	if set.Header.Get("Ck-Op") != "set" {
		t.Fatalf("first message: Ck-Op %q", set.Header.Get("Ck-Op"))
	}
	want := map[string]string{
		"Ck-Op": "expire", "Ck-Key": "lease/a", "Ck-Version": strconv.FormatUint(rec.Lamport, 10),
		"Ck-Origin": rec.Origin.String(), "Nats-Msg-Id": "lease/a@" + strconv.FormatUint(rec.Lamport, 10) + "@expire",
	}
	for name, v := range want {
		if got := exp.Header.Get(name); got != v {
			t.Errorf("expiry: %s = %q, want %q", name, got, v)
		}
	}
	if exp.Subject != "ck.kv.lease.a" || len(exp.Data) != 0 {
		t.Errorf("expiry: subject %q, payload %q", exp.Subject, exp.Data)
	}
}
