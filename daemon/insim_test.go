package daemon

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// waitFor is a --wait of want peers, with a timeout long enough for a
// loaded machine: a --wait that succeeds returns as soon as the ACKs are
// in, and one that cannot is refused at once or cut short.
func waitFor(want int) rpc.WriteOptions {
	return rpc.WriteOptions{Wait: want, Timeout: rpc.Duration(20 * time.Second)}
}

// TestInSimWriteWaitRead: three whole daemons on the simulated network.
// A write with --wait 2 returns once both peers hold it, so a read on
// either answers it at once, with no polling; a --wait for more peers
// than are alive is refused at once, naming the shortfall, the write
// stored all the same.
func TestInSimWriteWaitRead(t *testing.T) {
	t.Parallel()
	sc := newSimCluster(t)
	n1, n2, n3 := sc.start("n1", ""), sc.start("n2", ""), sc.start("n3", "")
	for _, n := range []*simDaemon{n1, n2, n3} {
		n.awaitMembers("alive", 3)
	}
	ctx := context.Background()
	rec := n1.set("k", "v1", waitFor(2))
	for _, n := range []*simDaemon{n2, n3} {
		v, version, _, err := n.c.GetRaw(ctx, "k", false)
		if err != nil || string(v) != "v1" || version != rec.Version {
			t.Errorf("%s right after set --wait 2 on n1: %q version %d, %v; want v1 version %d", n.name, v, version, err, rec.Version)
		}
	}

	_, err := n2.c.Put(ctx, "k", []byte("v2"), waitFor(3))
	var e *rpc.Error
	if !errors.As(err, &e) || !errors.Is(err, rpc.ErrWaitTimeout) || e.Acked > 2 || e.Wanted != 3 ||
		!strings.Contains(err.Error(), "only 2 peers are alive") {
		t.Fatalf("set --wait 3 with 2 peers: %v, want wait_timeout naming 2 alive peers", err)
	}
	if v, _, _, err := n2.c.GetRaw(ctx, "k", false); err != nil || string(v) != "v2" {
		t.Errorf("the write refused its --wait is stored all the same: %q, %v", v, err)
	}
	n1.awaitValue("k", "v2")
	n3.awaitValue("k", "v2")
}

// TestInSimHooks (moved here from cmd/ckd's hooks script): the example
// Lua hooks on a real daemon validate, transform and shape values; what
// on_set makes is what replicates; a broken script fails the reload and
// the old hooks stay in force, and fails a start.
func TestInSimHooks(t *testing.T) {
	t.Parallel()
	sc := newSimCluster(t)
	hooks := `hook "config/*" {
  script = "hooks/json_validate.lua"
  timeout = "2s" # not what this test checks: a loaded -race run can pass 50ms
}
hook "names/*" {
  script = "hooks/normalize.lua"
  timeout = "2s"
}
hook "accounts/*" {
  script = "hooks/redact.lua"
  timeout = "2s"
}`
	dir := t.TempDir()
	for _, f := range []string{"json_validate.lua", "normalize.lua", "redact.lua"} {
		copyFile(t, filepath.Join("..", "examples", "hooks", f), filepath.Join(dir, "hooks", f))
	}
	hooks = strings.ReplaceAll(hooks, `"hooks/`, `"`+dir+`/hooks/`)
	n1, n2 := sc.start("n1", hooks), sc.start("n2", hooks)
	n1.awaitMembers("alive", 2)
	n2.awaitMembers("alive", 2)
	ctx := context.Background()
	get := func(n *simDaemon, key string) string {
		t.Helper()
		v, _, _, err := n.c.GetRaw(ctx, key, false)
		if err != nil {
			t.Fatalf("%s: get %s: %v", n.name, key, err)
		}
		return string(v)
	}

	// on_set rejects: hook_rejected, the script's reason, nothing stored.
	n1.set("config/app", `{"port": 8080}`, rpc.WriteOptions{})
	_, err := n1.c.Put(ctx, "config/app", []byte(`{"port": `), rpc.WriteOptions{})
	if !errors.Is(err, rpc.ErrHookRejected) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("invalid JSON under config/: %v, want hook_rejected: not valid JSON", err)
	}
	if v := get(n1, "config/app"); !strings.Contains(v, `"port": 8080`) {
		t.Errorf("config/app after the rejected write: %q", v)
	}

	// on_set transforms: what is stored, and replicated, is its result.
	n1.set("names/a", "  MiXeD Case  ", waitFor(1))
	for _, n := range []*simDaemon{n1, n2} {
		if v := get(n, "names/a"); v != "mixed case" {
			t.Errorf("%s: names/a = %q, want the hook's \"mixed case\"", n.name, v)
		}
	}
	var export strings.Builder
	if err := n1.c.Export(ctx, "names/", &export); err != nil || !strings.Contains(export.String(), `"value":"mixed case"`) {
		t.Errorf("export names/: %v\n%s", err, export.String())
	}

	// on_get shapes reads (get, list --values), not export.
	n1.set("accounts/bob", `{"user":"bob","password":"hunter2"}`, rpc.WriteOptions{})
	if v := get(n1, "accounts/bob"); !strings.Contains(v, `"password":"[redacted]"`) || strings.Contains(v, "hunter2") {
		t.Errorf("get accounts/bob: %q, want the password redacted", v)
	}
	list, err := n1.c.List(ctx, rpc.ListOptions{Prefix: "accounts/", Values: true})
	if err != nil || len(list.Items) != 1 || strings.Contains(string(list.Items[0].Value), "hunter2") {
		t.Errorf("list accounts/ --values: %+v, %v; want the password redacted", list, err)
	}
	export.Reset()
	if err := n1.c.Export(ctx, "accounts/", &export); err != nil || !strings.Contains(export.String(), "hunter2") {
		t.Errorf("export accounts/ (not shaped by on_get): %v\n%s", err, export.String())
	}

	// Keys no pattern matches are untouched.
	n1.set("other/x", "  As Is  ", rpc.WriteOptions{})
	if v := get(n1, "other/x"); v != "  As Is  " {
		t.Errorf("other/x = %q", v)
	}

	// A reload with a broken script fails, naming file and line; the old
	// hooks stay in force.
	if err := os.WriteFile(filepath.Join(dir, "hooks", "normalize.lua"), []byte(brokenLua), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n1.c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "normalize.lua:4: syntax error") {
		t.Errorf("reload with a broken script: %v, want normalize.lua:4: syntax error", err)
	}
	n1.set("names/b", " STILL Normalized ", rpc.WriteOptions{})
	if v := get(n1, "names/b"); v != "still normalized" {
		t.Errorf("names/b after the failed reload = %q, want the old hook's \"still normalized\"", v)
	}
	metrics, err := n1.c.Metrics(ctx)
	if err != nil || !regexp.MustCompile(`(?m)^ck_hook_events_total\{event="rejection"\} 1$`).MatchString(metrics) {
		t.Errorf("metrics: %v; want one rejection counted", err)
	}

	// A start with the broken script is refused, naming it.
	other := t.TempDir()
	src := strings.NewReplacer(n2.dir, other, n2.sock, filepath.Join(other, "ckd.sock")).Replace(n2.config())
	cfg, err := ParseConfig(filepath.Join(other, "ckd.hcl"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "normalize.lua:4: syntax error") {
		if d != nil {
			d.Close()
		}
		t.Errorf("a start with a broken script: %v, want normalize.lua:4: syntax error", err)
	}
}

// brokenLua has a syntax error the parser finds on line 4.
const brokenLua = `-- a script with a syntax error: the parser finds it on line 4
function on_set(key, value, meta)
  return value ..
end
`

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(to), 0o755)
	}
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestInSimRejoin (moved here from cmd/ckd's rejoin script): rejoin on
// the stale side of a long separation moves its data to
// data_dir/stale-<time>/, pulls the cluster's data as a new node, and
// writes again its own writes made since it was last in sync — but not
// what it held from before, so a key deleted meanwhile stays deleted.
func TestInSimRejoin(t *testing.T) {
	t.Parallel()
	sc := newSimCluster(t)
	n1, n2 := sc.start("n1", ""), sc.start("n2", "")
	n1.awaitMembers("alive", 2)
	n2.awaitMembers("alive", 2)
	n2.set("early/n2", "e", waitFor(1))
	mark := time.Now()
	n1.set("deleted", "v", waitFor(1))
	n1.inSyncSince(mark)
	n2.inSyncSince(mark)

	n2.shutdown()
	n1.set("during/n1", "a", rpc.WriteOptions{})
	ctx := context.Background()
	if _, err := n1.c.Delete(ctx, "deleted", rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the separation: past purge_log_ttl (1 s)
	n2.begin()
	n1.awaitState("n2", "quarantined")
	n2.awaitState("n1", "quarantined")

	// Writes on the stale side while quarantined: they stay there, for now.
	n2.set("mine/n2", "x", rpc.WriteOptions{})
	if _, err := n2.c.Delete(ctx, "early/n2", rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := n2.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n2.c.Rejoin(ctx)
	if err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	t.Logf("rejoin: %+v", res)
	if res.OldID != st.ID || res.NewID == st.ID || len(res.NewID) != 32 {
		t.Errorf("rejoined as %s (was %s), want a new id in place of %s", res.NewID, res.OldID, st.ID)
	}
	data := filepath.Join(n2.dir, "data")
	if ok, _ := regexp.MatchString(`^`+regexp.QuoteMeta(data)+`/stale-[0-9]{8}T[0-9]{6}Z$`, res.StaleDir); !ok {
		t.Errorf("stale dir %q, want %s/stale-<UTC time>", res.StaleDir, data)
	}
	if res.Peer != "n1" || res.Received == 0 || res.Reapplied != 2 {
		t.Errorf("pulled %d records from %q, re-applied %d; want some from n1, and 2 re-applied", res.Received, res.Peer, res.Reapplied)
	}
	for _, f := range []string{filepath.Join(res.StaleDir, ownWritesFile), filepath.Join(res.StaleDir, "ckd.db"), filepath.Join(data, "ckd.db")} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}

	// It holds the cluster's data, without what was deleted meanwhile ...
	n2.awaitValue("during/n1", "a")
	n2.awaitMissing("deleted")
	// ... and its own writes since the separation, which reach n1 too.
	n2.awaitValue("mine/n2", "x")
	n2.awaitMissing("early/n2")
	n1.awaitValue("mine/n2", "x")
	n1.awaitMissing("early/n2")
	eventually(t, 20*time.Second, func() error { return n2.c.Health(ctx) })
	n1.awaitMembers("alive", 2)
	if st2, err := n2.c.Status(ctx); err != nil || st2.ID != res.NewID {
		t.Errorf("status after the rejoin: id %s, %v; want %s", st2.ID, err, res.NewID)
	}

	// n1 quarantines no present peer now (the old id left): nothing to rejoin.
	if _, err := n1.c.Rejoin(ctx); !errors.Is(err, rpc.ErrBadRequest) || !strings.Contains(err.Error(), "no peer is quarantined") {
		t.Errorf("rejoin on n1: %v, want bad_request: no peer is quarantined", err)
	}
}

// TestInSimStuckClientsDuringRejoinAndStop (moved here from cmd/ckd): a
// watcher that reads nothing and a write waiting 60 s for an ACK the
// quarantining peer never sends hold up neither a rejoin nor a stop: both
// finish within seconds, the waiting write is told it was cut short
// (wait_timeout), and the watcher's connection is ended.
func TestInSimStuckClientsDuringRejoinAndStop(t *testing.T) {
	t.Parallel()
	sc := newSimCluster(t)
	_, b := sc.quarantinedPair()
	// c joins after the separation: alive to b, so b's write waits for
	// its ACK (the quarantining a does not count).
	c := sc.start("c", "")
	b.awaitMembers("alive", 2)
	waitErr := pendingWait(b, c, "waiting")
	stuckWatcher(t, b.sock)
	b.manyChanges("fill1", 800)

	start := time.Now()
	res, err := b.c.Rejoin(context.Background())
	took := time.Since(start)
	t.Logf("rejoin with a stuck watcher and a stuck --wait: %s", took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	if res.NewID == "" {
		t.Errorf("rejoin: %+v", res)
	}
	// A rejoin held by the stuck watcher would take at least its write
	// deadline (heldCost, a minute; the stuck --wait, 60 s too); the
	// rejoin's own work is a fraction of a second on a quiet machine,
	// seconds on a loaded one.
	if took > heldCost/2 {
		t.Errorf("the rejoin took %s: held by a stuck client?", took)
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, rpc.ErrWaitTimeout) {
			t.Errorf("the waiting write: %v, want wait_timeout (stored, not acknowledged)", err)
		}
	case <-time.After(heldCost / 2): // its own wait is 60 s
		t.Error("the waiting write still waits after the rejoin")
	}

	// And a stop, with a new stuck watcher.
	stuckWatcher(t, b.sock)
	b.manyChanges("fill2", 800)
	took = b.shutdown()
	t.Logf("stop with a stuck watcher: %s", took.Round(time.Millisecond))
	// Held by the stuck watcher, the stop would wait out the API's
	// shutdown timeout (heldCost); unheld it takes a tenth of a second.
	if took > heldCost/2 {
		t.Errorf("the stop took %s, want well under the %s a stuck client would cost", took, heldCost)
	}
}

// TestInSimStopWhileWaiting: a stop while a write waits for an ACK that
// never comes returns promptly: the wait is cut short (wait_timeout,
// saying why) rather than waited out, and the write is stored.
func TestInSimStopWhileWaiting(t *testing.T) {
	t.Parallel()
	sc := newSimCluster(t)
	a, b := sc.start("a", ""), sc.start("b", "")
	b.awaitMembers("alive", 2)
	waitErr := pendingWait(b, a, "waiting")
	took := b.shutdown()
	t.Logf("stop with a pending --wait: %s", took.Round(time.Millisecond))
	if took > heldCost/2 { // the pending --wait asks for 60 s
		t.Errorf("the stop took %s: held by the pending --wait?", took)
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, rpc.ErrWaitTimeout) && !errors.Is(err, rpc.ErrShuttingDown) {
			t.Errorf("the waiting write: %v, want its wait cut short", err)
		}
	case <-time.After(heldCost / 2): // its own wait is 60 s
		t.Error("the waiting write still waits after the stop")
	}
	// Started again, the write is there: it was committed before the wait.
	b.begin()
	b.awaitValue("waiting", "v")
}

// pendingWait starts a write of key on n that waits 60 s for one ACK,
// which silent, an alive peer that n's datagrams no longer reach, never
// sends, and returns once the write is committed and its wait runs; the
// channel gets its error.
func pendingWait(n, silent *simDaemon, key string) <-chan error {
	n.sc.t.Helper()
	n.sc.nw.Block([]netip.AddrPort{n.ep.Load().Addr()}, []netip.AddrPort{silent.ep.Load().Addr()})
	errc := make(chan error, 1)
	go func() {
		_, err := n.c.Put(context.Background(), key, []byte("v"), rpc.WriteOptions{Wait: 1, Timeout: rpc.Duration(60 * time.Second)})
		errc <- err
	}()
	n.awaitValue(key, "v")
	time.Sleep(200 * time.Millisecond) // past a wait that would end at once
	select {
	case err := <-errc:
		n.sc.t.Fatalf("the write's wait ended by itself, not pending: %v", err)
	default:
	}
	return errc
}
