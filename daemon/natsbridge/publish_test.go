package natsbridge_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/store"
)

// checkMessage compares a published message with the record it announces.
func checkMessage(t *testing.T, m *nats.Msg, prefix string, rec store.Record) {
	t.Helper()
	if want := prefix + ".kv." + natsbridge.SubjectKey(rec.Key); m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	key, err := natsbridge.KeyFromSubject(strings.TrimPrefix(m.Subject, prefix+".kv."))
	if err != nil || key != rec.Key {
		t.Errorf("subject %q maps back to %q (%v), want %q", m.Subject, key, err, rec.Key)
	}
	op := "set"
	if rec.Deleted {
		op = "del"
	}
	h := rec.Hash()
	want := map[string]string{
		// NATS trims white space at both ends of header values.
		"Ck-Key":      strings.TrimSpace(rec.Key),
		"Ck-Op":       op,
		"Ck-Version":  strconv.FormatUint(rec.Lamport, 10),
		"Ck-Origin":   rec.Origin.String(),
		"Nats-Msg-Id": strings.TrimSpace(fmt.Sprintf("%s@%d@%s", rec.Key, rec.Lamport, hex.EncodeToString(h[:4]))),
	}
	var names []string
	for name := range m.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"Ck-Key", "Ck-Op", "Ck-Origin", "Ck-Version", "Nats-Msg-Id"}) {
		t.Errorf("%s: headers %v", m.Subject, names)
	}
	for name, v := range want {
		if got := m.Header.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("%s: header %s = %q, want %q", m.Subject, name, got, v)
		}
	}
	if string(m.Data) != string(rec.Value) {
		t.Errorf("%s: payload %q, want %q", m.Subject, m.Data, rec.Value)
	}
}

func TestPublishMessages(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")

	keys := []string{"plain/key", "with spaces/a b", "dots.in/seg.ment", "star/*", "gt/>", "tilde/~7E",
		"café/日本", "emoji/😀", " leading space", "trailing space ", "x", "deep/a/b/c/d"}
	ctx := context.Background()
	var recs []store.Record
	for i, k := range keys {
		rec, err := st.Set(ctx, k, []byte("value of "+k+" "+strconv.Itoa(i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	rec, err := st.Set(ctx, "empty/value", []byte{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, rec)
	// Let the sets be published before plain/key is deleted: a change that
	// has moved on before the bridge reads it is skipped (latest wins),
	// which a loaded machine would otherwise turn into a missing message.
	c.waitN(t, len(recs))
	for _, k := range []string{"plain/key", "never/written"} {
		rec, err := st.Delete(ctx, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	msgs := c.waitN(t, len(recs))
	if len(msgs) != len(recs) {
		t.Fatalf("%d messages, want %d", len(msgs), len(recs))
	}
	for i, m := range msgs { // one publisher, in commit order
		checkMessage(t, m, "ck", recs[i])
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Published != uint64(len(recs)) || s.Changes != s.Published || s.Unconfirmed != 0 {
			return fmt.Errorf("stats %+v, want %d published", s, len(recs))
		}
		return nil
	})
}

func TestPublishModes(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	nc := connect(t, srv.ClientURL())
	got := map[string]*collector{}
	bridges := map[string]*natsbridge.Bridge{}
	for _, mode := range []string{"local", "all", "off"} {
		got[mode] = collect(t, nc, mode+".kv.>")
		b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}, Prefix: mode, Publish: mode}, st, nil)
		waitState(t, b, "connected")
		bridges[mode] = b
	}
	ctx := context.Background()
	mine, err := st.Set(ctx, "mine", []byte("1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := store.NewNodeID()
	theirs := store.Record{Key: "theirs", Value: []byte("2"), VV: store.VV{other: 5}, Lamport: 5,
		Origin: other, LWW: store.Stamp{Lamport: 5, Origin: other}, At: time.Now().UnixMilli()}
	if res, err := st.Apply(ctx, theirs); err != nil || res.Outcome != store.Applied {
		t.Fatalf("apply: %v %v", res.Outcome, err)
	}
	all := got["all"].waitN(t, 2)
	checkMessage(t, all[0], "all", mine)
	checkMessage(t, all[1], "all", theirs)
	local := got["local"].waitN(t, 1)
	checkMessage(t, local[0], "local", mine)
	// The foreign change reached "local" too: it is filtered, not late.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := bridges["all"].Stats(); s.Published != 2 {
			return fmt.Errorf("all: %+v", s)
		}
		return nil
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(got["local"].all()); n != 1 {
		t.Errorf("local published %d messages, want 1", n)
	}
	if n := len(got["off"].all()); n != 0 {
		t.Errorf("off published %d messages", n)
	}
	if s := bridges["local"].Stats(); s.Changes != 1 || s.Published != 1 {
		t.Errorf("local stats %+v", s)
	}
	if s := bridges["off"].Stats(); s.Changes != 0 || s.Published != 0 {
		t.Errorf("off stats %+v", s)
	}
}

// gatedSource holds back the record read of the first event until the
// test lets it go, so that the record has moved on by then.
type gatedSource struct {
	*store.Store
	once    sync.Once
	reading chan struct{} // closed when the first Get starts
	release chan struct{}
}

func (g *gatedSource) Get(key string) (store.Record, bool, error) {
	g.once.Do(func() { close(g.reading); <-g.release })
	return g.Store.Get(key)
}

func TestLatestWins(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	src := &gatedSource{Store: st, reading: make(chan struct{}), release: make(chan struct{})}
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, src, nil)
	waitState(t, b, "connected")
	ctx := context.Background()
	if _, err := st.Set(ctx, "k", []byte("old"), nil); err != nil {
		t.Fatal(err)
	}
	<-src.reading
	newer, err := st.Set(ctx, "k", []byte("new"), nil)
	if err != nil {
		t.Fatal(err)
	}
	close(src.release)
	msgs := c.waitN(t, 1)
	checkMessage(t, msgs[0], "ck", newer)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Changes != 2 || s.Skipped != 1 || s.Published != 1 {
			return fmt.Errorf("stats %+v: want 2 changes, 1 skipped, 1 published", s)
		}
		return nil
	})
	if n := len(c.all()); n != 1 {
		t.Errorf("%d messages, want only the newer one", n)
	}
}

func TestTruncatedAboveMaxPayload(t *testing.T) {
	srv := startServer(t, func(o *server.Options) { o.MaxPayload = 1024 })
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")
	ctx := context.Background()
	small, _ := st.Set(ctx, "small", []byte(strings.Repeat("s", 500)), nil)
	big, _ := st.Set(ctx, "big", []byte(strings.Repeat("b", 2000)), nil)
	msgs := c.waitN(t, 2)
	checkMessage(t, msgs[0], "ck", small)
	m := msgs[1]
	if m.Header.Get("Ck-Truncated") != "true" || len(m.Data) != 0 {
		t.Errorf("big value: Ck-Truncated %q, %d payload bytes; want headers only", m.Header.Get("Ck-Truncated"), len(m.Data))
	}
	if m.Header.Get("Ck-Version") != strconv.FormatUint(big.Lamport, 10) || m.Header.Get("Ck-Key") != "big" {
		t.Errorf("truncated message headers %v", m.Header)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Published != 2 || s.Truncated != 1 || s.Dropped != 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
}

// TestStopPublishesWhatWasCommitted: the changes committed before the stop
// are published before Run returns.
func TestStopPublishesWhatWasCommitted(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, stop := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(t, b, "connected")
	const n = 2000
	for i := range n {
		if _, err := st.Set(context.Background(), key(i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if s := b.Stats(); s.Published != n || s.Dropped != 0 || s.State != "closed" {
		t.Fatalf("after stop: %+v, want %d published", s, n)
	}
	c.waitN(t, n)
}
