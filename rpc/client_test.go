package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

func start(t *testing.T) (*rpc.Client, *rpctest.Backend) {
	t.Helper()
	b := rpctest.NewBackend()
	s := rpctest.Start(t, b, rpc.ServerOptions{})
	return s.Client, b
}

func TestClientKeyEscaping(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	keys := []string{
		"plain", "a/b/c", "with space", "100%", "100%25", "what?", "what?x=1", "x#frag",
		"a+b", "a=b&c=d", "semi;colon", "%2F", "a%2Fb", "..x", "x..", ".hidden", "a/.b/..c",
		"ünïcødé/ключ/键", "emoji/😀", "quote\"s", "back\\slash", "tilde~", "colon:at@",
		"brackets[]{}", "pipe|caret^", "'single'", strings.Repeat("k", 1024),
	}
	for _, k := range keys {
		t.Run(k[:min(len(k), 20)], func(t *testing.T) {
			rec, err := c.Put(ctx, k, []byte("v:"+k), rpc.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Key != k {
				t.Errorf("put answered key %q", rec.Key)
			}
			if _, ok := b.Record(k); !ok {
				t.Fatalf("backend has no %q", k)
			}
			g, _, err := c.Get(ctx, k, rpc.GetOptions{})
			if err != nil || g.Key != k || string(g.Value) != "v:"+k {
				t.Errorf("get = %q %q %v", g.Key, g.Value, err)
			}
			v, ver, _, err := c.GetRaw(ctx, k, false)
			if err != nil || string(v) != "v:"+k || ver != rec.Version {
				t.Errorf("get raw = %q %d %v", v, ver, err)
			}
			lr, err := c.List(ctx, rpc.ListOptions{Prefix: k})
			if err != nil || len(lr.Items) == 0 || lr.Items[0].Key != k {
				t.Errorf("list prefix %q = %+v %v", k, lr, err)
			}
			if _, err := c.Delete(ctx, k, rpc.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if r, _ := b.Record(k); !r.Deleted {
				t.Errorf("not deleted")
			}
		})
	}
}

// Keys the store refuses must reach it as they are, not cleaned on the way.
func TestClientBadKeysReachBackend(t *testing.T) {
	c, _ := start(t)
	for _, k := range []string{"a/../b", "..", ".", "a//b", "/lead", "trail/", "a/./b", "", "tab\tkey"} {
		_, err := c.Put(context.Background(), k, []byte("v"), rpc.WriteOptions{})
		if !errors.Is(err, rpc.ErrBadRequest) {
			t.Errorf("put %q: err = %v, want bad_request", k, err)
			continue
		}
		if k != "" && !strings.Contains(err.Error(), strconv.Quote(k)) {
			t.Errorf("put %q: the backend saw another key: %v", k, err)
		}
	}
}

func TestClientValues(t *testing.T) {
	c, _ := start(t)
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed))
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	values := map[string][]byte{
		"empty":    {},
		"nul":      {0},
		"binary":   {0xff, 0xfe, 0x00, 0x01, 0x80},
		"newlines": []byte("a\nb\r\n\n"),
		"utf8":     []byte("héllo wörld ✓"),
		"json":     []byte(`{"a":[1,2]}`),
		"bad-utf8": []byte("ok\xc3"),
		"big":      big,
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			rec, err := c.Put(ctx, name, v, rpc.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec.Value, v) {
				t.Errorf("put answered a different value")
			}
			g, _, err := c.Get(ctx, name, rpc.GetOptions{})
			if err != nil || !bytes.Equal(g.Value, v) {
				t.Errorf("get json: %v, equal=%v", err, bytes.Equal(g.Value, v))
			}
			raw, _, _, err := c.GetRaw(ctx, name, false)
			if err != nil || !bytes.Equal(raw, v) {
				t.Errorf("get raw: %v, equal=%v", err, bytes.Equal(raw, v))
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	if _, _, err := c.Get(ctx, "nope", rpc.GetOptions{}); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("get missing: %v", err)
	} else if e := rpc.AsError(err); e.Status != 404 {
		t.Errorf("status %d", e.Status)
	}
	if _, _, _, err := c.GetRaw(ctx, "nope", true); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("get raw missing: %v", err)
	}
	rec, err := c.Put(ctx, "k", []byte("1"), rpc.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wrong := rec.Version + 1
	if _, err := c.Put(ctx, "k", []byte("2"), rpc.WriteOptions{IfVersion: &wrong}); !errors.Is(err, rpc.ErrVersionMismatch) {
		t.Errorf("cas: %v", err)
	}
	if _, err := c.Put(ctx, "k", []byte("2"), rpc.WriteOptions{IfVersion: &rec.Version}); err != nil {
		t.Errorf("cas with the right version: %v", err)
	}
	zero := uint64(0)
	if _, err := c.Put(ctx, "k", []byte("2"), rpc.WriteOptions{IfVersion: &zero}); !errors.Is(err, rpc.ErrVersionMismatch) {
		t.Errorf("create-only on an existing key: %v", err)
	}
	b.Lock()
	b.Peers = 1
	b.Unlock()
	_, err = c.Put(ctx, "k", []byte("3"), rpc.WriteOptions{Wait: 3, Timeout: rpc.Duration(1e9)})
	var e *rpc.Error
	if !errors.Is(err, rpc.ErrWaitTimeout) || !errors.As(err, &e) || e.Acked != 1 || e.Wanted != 3 || e.Status != 504 {
		t.Errorf("wait: %#v", err)
	}
	if r, _ := b.Record("k"); string(r.Value) != "3" {
		t.Errorf("a wait shortfall must still store: %q", r.Value)
	}
	b.Lock()
	b.Hook = func(string, []byte) ([]byte, error) { return nil, rpc.Errorf(rpc.ErrHookRejected, "odd values only") }
	b.Unlock()
	if _, err := c.Put(ctx, "k", []byte("4"), rpc.WriteOptions{}); !errors.Is(err, rpc.ErrHookRejected) || err.Error() != "odd values only" {
		t.Errorf("hook: %v", err)
	}
	b.Lock()
	b.HealthErr = rpc.ErrSyncing
	b.Unlock()
	if err := c.Health(ctx); !errors.Is(err, rpc.ErrSyncing) {
		t.Errorf("health: %v", err)
	}
}

func TestClientTooLarge(t *testing.T) {
	c, b := start(t) // the default limit, 4 MiB
	ctx := context.Background()
	for _, n := range []int{rpc.DefaultMaxValueSize + 1, 16 << 20} {
		_, err := c.Put(ctx, "big", make([]byte, n), rpc.WriteOptions{})
		if !errors.Is(err, rpc.ErrTooLarge) {
			t.Errorf("put %d bytes: %v", n, err)
		}
	}
	if _, ok := b.Record("big"); ok {
		t.Error("a too large value was stored")
	}
	if _, err := c.Put(ctx, "big", make([]byte, rpc.DefaultMaxValueSize), rpc.WriteOptions{}); err != nil {
		t.Errorf("put at the limit: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	notSock := filepath.Join(dir, "file")
	os.WriteFile(notSock, nil, 0o600)
	for _, sock := range []string{missing, stale, notSock} {
		c := rpc.NewClient(sock)
		if c.Socket() != sock {
			t.Errorf("Socket() = %q", c.Socket())
		}
		err := c.Health(context.Background())
		if !errors.Is(err, rpc.ErrUnreachable) {
			t.Errorf("%s: err = %v, want ErrUnreachable", sock, err)
			continue
		}
		if !strings.Contains(err.Error(), sock) {
			t.Errorf("the error does not name the socket: %v", err)
		}
		var ue *rpc.UnreachableError
		if !errors.As(err, &ue) || ue.Socket != sock || ue.Err == nil {
			t.Errorf("not an UnreachableError: %#v", err)
		}
	}
}

func TestClientNodeCalls(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Errorf("health: %v", err)
	}
	m, err := c.Members(ctx)
	if err != nil || len(m) != 1 || !m[0].Self || m[0].ID != rpctest.SelfID {
		t.Errorf("members = %+v %v", m, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.ID != rpctest.SelfID || st.Sync.State != "synced" || st.Members["alive"] != 1 {
		t.Errorf("status = %+v %v", st, err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Errorf("reload: %v", err)
	}
	b.Lock()
	if b.Reloads != 1 {
		t.Errorf("reloads = %d", b.Reloads)
	}
	b.Unlock()
	b.Lock()
	b.ReloadErr = rpc.Errorf(rpc.ErrHookError, "hooks/a.lua:1: boom")
	b.Unlock()
	if err := c.Reload(ctx); !errors.Is(err, rpc.ErrHookError) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("reload error: %v", err)
	}
	text, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(text, "ck_keys 0") {
		t.Errorf("metrics = %q %v", text, err)
	}
}

func TestClientGetFresh(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	b.Lock()
	b.Peers = 2
	b.Syncing = true
	b.Unlock()
	c.Put(ctx, "k", []byte("v"), rpc.WriteOptions{})
	g, info, err := c.Get(ctx, "k", rpc.GetOptions{Fresh: true})
	if err != nil || !info.Fresh || info.Answered != 3 || info.Alive != 3 || info.Asked != 3 || !info.Syncing || g.Answered != 3 {
		t.Errorf("fresh get = %+v %+v %v", g, info, err)
	}
	_, _, info, err = c.GetRaw(ctx, "k", false)
	if err != nil || info.Fresh || !info.Syncing {
		t.Errorf("plain raw get info = %+v %v", info, err)
	}
}

func TestClientListAll(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	b.Lock()
	b.PageSize = 2
	b.Unlock()
	for i := range 7 {
		c.Put(ctx, "p/"+strconv.Itoa(i), []byte(strconv.Itoa(i)), rpc.WriteOptions{})
	}
	c.Put(ctx, "q", []byte("x"), rpc.WriteOptions{})
	c.Delete(ctx, "p/3", rpc.WriteOptions{})
	var got []string
	err := c.ListAll(ctx, "p/", true, func(r rpc.Record) error {
		got = append(got, r.Key+"="+string(r.Value))
		return nil
	})
	want := "p/0=0 p/1=1 p/2=2 p/4=4 p/5=5 p/6=6"
	if err != nil || strings.Join(got, " ") != want {
		t.Errorf("ListAll = %v %v, want %s", got, err, want)
	}
	stop := errors.New("stop")
	n := 0
	err = c.ListAll(ctx, "", false, func(rpc.Record) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("fn's error: %v after %d", err, n)
	}
	for _, syncing := range []bool{false, true} {
		b.Lock()
		b.Syncing = syncing
		b.Unlock()
		n = 0
		info, err := c.ListAllInfo(ctx, "p/", false, func(rpc.Record) error { n++; return nil })
		if err != nil || n != 6 || info.Syncing != syncing {
			t.Errorf("ListAllInfo while syncing=%v: %+v, %d records, %v", syncing, info, n, err)
		}
		var buf bytes.Buffer
		info, err = c.ExportInfo(ctx, "p/", &buf)
		if err != nil || strings.Count(buf.String(), "\n") != 7 || info.Syncing != syncing {
			t.Errorf("ExportInfo while syncing=%v: %+v, %q, %v", syncing, info, buf.String(), err)
		}
	}
}

// A watch answers Ck-Index, where it starts: from now, the last index.
func TestClientWatchStarted(t *testing.T) {
	c, _ := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, k := range []string{"a", "b"} {
		if _, err := c.Put(ctx, k, nil, rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var since0 uint64
	for _, tc := range []struct {
		since *uint64
		want  uint64
	}{{nil, 2}, {&since0, 2}} {
		got := make(chan uint64, 1)
		err := c.WatchWith(ctx, rpc.WatchOptions{Since: tc.since, Started: func(last uint64, ok bool) error {
			if !ok {
				t.Error("no Ck-Index")
			}
			got <- last
			return errors.New("enough")
		}}, func(rpc.Event) error { return nil })
		if err == nil || err.Error() != "enough" {
			t.Errorf("since %v: %v", tc.since, err)
		}
		if last := <-got; last != tc.want {
			t.Errorf("since %v: Ck-Index %d, want %d", tc.since, last, tc.want)
		}
	}
}
