package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/rpc"
)

// TestNATSCluster runs three real ckd on the nats transport with a cluster
// key, configured from examples/config/nats-cluster.hcl, against an
// embedded nats-server: writes replicate (one larger than max_datagram,
// which goes by announce and a fetch over a stream) with --wait 2; a node
// stopped while writes are made catches up when it comes back (bootstrap
// over streams); a fresh read is answered by all three; and
// examples/scripts/nats-write.sh writes through NATS.
func TestNATSCluster(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	ns := startNATSServer(t)

	dir := t.TempDir()
	cluster := fmt.Sprintf("natsc-%08x", r.Uint32())
	cfg := natsClusterConfig(t, dir, cluster, ns.ClientURL())
	nodes := make([]*ckdProc, 3)
	for i := range nodes {
		nodes[i] = &ckdProc{name: fmt.Sprintf("n%d", i), dir: dir, cfg: cfg}
		nodes[i].start(t)
	}
	clients := make([]*rpc.Client, 3)
	for i, n := range nodes {
		clients[i] = rpc.NewClient(n.sock())
	}
	awaitAlive(t, clients, 3)
	st, err := clients[0].Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ap, err := netip.ParseAddrPort(st.Address); st.Transport != "nats" || err != nil || ap.Addr().As16()[0] != 0xfd {
		t.Errorf("status: transport %q, address %q; want nats and a synthetic fd00::/8 address", st.Transport, st.Address)
	}

	big := strings.Repeat("0123456789abcdef", 500) // 8,000 bytes > max_datagram
	nodes[0].mustCkctl(t, "", "set", "--wait", "2", "small", "v1")
	nodes[1].mustCkctl(t, big, "set", "--wait", "2", "big", "-")
	for _, c := range clients {
		natsAwaitValue(t, c, "small", "v1")
		natsAwaitValue(t, c, "big", big)
	}

	// n2 stops; writes go on without it; back, it bootstraps over streams.
	nodes[2].shutdown(t)
	awaitAlive(t, clients[:2], 2)
	for i := range 20 {
		nodes[i%2].mustCkctl(t, "", "set", "--wait", "1", fmt.Sprintf("while-away/%d", i), fmt.Sprint(i))
	}
	nodes[0].mustCkctl(t, big+"2", "set", "big", "-")
	nodes[2].start(t)
	awaitAlive(t, clients, 3)
	for i := range 20 {
		natsAwaitValue(t, clients[2], fmt.Sprintf("while-away/%d", i), fmt.Sprint(i))
	}
	natsAwaitValue(t, clients[2], "big", big+"2")

	var got struct {
		Value    string `json:"value"`
		Answered int    `json:"answered"`
		Alive    int    `json:"alive"`
	}
	out := nodes[2].mustCkctl(t, "", "-o", "json", "get", "--fresh", "small")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Value != "v1" || got.Answered != 3 || got.Alive != 3 {
		t.Errorf("get --fresh: %s (%v); want v1, answered 3 of 3 alive", out, err)
	}
	checkNATSInbound(t, ns.ClientURL(), clients)
	checkNATSWriteScript(t, ns.ClientURL(), nodes[1], clients[2])
}

// checkNATSInbound sends writes to the cluster's set subjects: each is
// taken by one node of the queue group, through on_set (the example
// json_validate hook on in/*), so each is stored once, has one version on
// every node, and is published once on the kv subjects; a value the hook
// refuses gets the API's error as the reply and is stored nowhere.
func checkNATSInbound(t *testing.T, url string, clients []*rpc.Client) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	published, err := nc.SubscribeSync("ck.kv.in.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		reply, err := nc.Request(fmt.Sprintf("ck.set.in.%d", i), fmt.Appendf(nil, `{"n":%d}`, i), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rec rpc.Record
		if err := json.Unmarshal(reply.Data, &rec); err != nil || rec.Key != fmt.Sprintf("in/%d", i) || rec.Version == 0 {
			t.Fatalf("reply to in/%d: %s (%v)", i, reply.Data, err)
		}
	}
	reply, err := nc.Request("ck.set.in.bad", []byte("not json"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(reply.Data, []byte("hook_rejected")) || !bytes.Contains(reply.Data, []byte("not valid JSON")) {
		t.Errorf("reply to a value the hook refuses: %s", reply.Data)
	}
	for i := range n {
		key := fmt.Sprintf("in/%d", i)
		var versions []uint64
		for _, c := range clients {
			natsAwaitValue(t, c, key, fmt.Sprintf(`{"n":%d}`, i))
			_, ver, _, err := c.GetRaw(context.Background(), key, false)
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, ver)
		}
		if versions[0] != versions[1] || versions[1] != versions[2] {
			t.Errorf("%s has versions %v on the three nodes: applied more than once", key, versions)
		}
	}
	for _, c := range clients {
		if _, _, _, err := c.GetRaw(context.Background(), "in/bad", false); err == nil {
			t.Errorf("%s stored the value the hook refused", c.Socket())
		}
	}
	got := 0
	for {
		_, err := published.NextMsg(time.Second)
		if err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Errorf("%d changes published on ck.kv.in.>, want %d: each once, by the node that took it", got, n)
	}
}

// natsClusterConfig writes the example config with this test's server,
// cluster name and a key from ckctl keygen, faster timers and
// clusterLines in its cluster block, and checks that ckd accepts the
// example itself.
func natsClusterConfig(t *testing.T, dir, cluster, url string, clusterLines ...string) string {
	example := "../../examples/config/nats-cluster.hcl"
	if out, err := exec.Command(filepath.Join(binDir, "ckd"), "-config", example, "-check").CombinedOutput(); err != nil {
		t.Fatalf("ckd -check %s: %v\n%s", example, err, out)
	}
	bad := filepath.Join(dir, "no-nats-block.hcl")
	if err := os.WriteFile(bad, []byte("cluster {\n  transport = \"nats\"\n  insecure = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "ckd"), "-config", bad, "-check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `nats: cluster.transport "nats" needs a nats block`) {
		t.Errorf("ckd -check with transport nats and no nats block: %v\n%s", err, out)
	}
	key, err := exec.Command(filepath.Join(binDir, "ckctl"), "keygen").Output()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(src)
	for _, sub := range []struct{ re, with string }{
		{`(?m)^(\s*name\s*=\s*)"example"`, fmt.Sprintf("${1}%q", cluster)},
		{`(?m)^(\s*keyring_file\s*=\s*)"[^"]*"`, fmt.Sprintf("${1}%q\n  heartbeat = \"500ms\"\n  dead_after = \"3s\"\n  sync_interval = \"200ms\"", keyFile) +
			strings.Join(append([]string{""}, clusterLines...), "\n  ")},
		{`(?m)^(\s*url\s*=\s*)"[^"]*"`, fmt.Sprintf("${1}%q", url)},
	} {
		re := regexp.MustCompile(sub.re)
		if !re.MatchString(hcl) {
			t.Fatalf("%s: no match for %s", example, sub.re)
		}
		hcl = re.ReplaceAllString(hcl, sub.with)
	}
	hook, err := filepath.Abs("../../examples/hooks/json_validate.lua")
	if err != nil {
		t.Fatal(err)
	}
	hcl += fmt.Sprintf("\nhook \"in/*\" {\n  script = %q\n}\n", hook)
	path := filepath.Join(dir, "nats-cluster.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeNATSDir, in binDir, holds a stand-in for the nats CLI that prints its
// arguments.
const fakeNATSDir = "fake-nats"

// writeFakeNATS writes the stand-in. TestMain does it before any test
// runs: an executable written while parallel tests fork children can be
// held open for writing by one of them until it execs, and running it
// then fails with "text file busy".
func writeFakeNATS(dir string) error {
	if err := os.Mkdir(filepath.Join(dir, fakeNATSDir), 0o755); err != nil {
		return err
	}
	fake := "#!/bin/sh\nprintf '%s\\n' \"$@\"\n"
	return os.WriteFile(filepath.Join(dir, fakeNATSDir, "nats"), []byte(fake), 0o755)
}

// checkNATSWriteScript runs examples/scripts/nats-write.sh with a stand-in
// for the nats CLI that prints its arguments, checks them (the subject key
// among them), sends the request they describe, and finds the write on
// another node.
func checkNATSWriteScript(t *testing.T, url string, via *ckdProc, other *rpc.Client) {
	bin := filepath.Join(binDir, fakeNATSDir) // written by TestMain: see writeFakeNATS
	key := "from nats/caf\u00e9.~x"
	cmd := exec.Command("sh", "../../examples/scripts/nats-write.sh", key, "via nats")
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "NATS_URL="+url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nats-write.sh: %v", err)
	}
	args := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := []string{"--server", url, "req", "ck.set." + natsbridge.SubjectKey(key), "via nats"}
	if strings.Join(args, "|") != strings.Join(want, "|") {
		t.Fatalf("nats-write.sh ran nats %q, want %q", args, want)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reply, err := nc.Request(args[3], []byte(args[4]), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rec rpc.Record
	if err := json.Unmarshal(reply.Data, &rec); err != nil || rec.Key != key {
		t.Fatalf("reply %s (%v)", reply.Data, err)
	}
	natsAwaitValue(t, other, key, "via nats")
}

// natsAwaitValue polls a node (at most 20 s) until key holds want there.
func natsAwaitValue(t *testing.T, c *rpc.Client, key, want string) {
	t.Helper()
	eventually(t, 20*time.Second, c.Socket(), valueIs(c, key, want))
}
