//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/internal/netlab"
	"github.com/cloudknowledge/ck/rpc"
)

// startOnHost starts ckd in host's namespace with the given cluster block
// and waits until its API answers; its data dir and socket are on the
// shared file system.
func startOnHost(t *testing.T, lab *netlab.Lab, host, clusterHCL string) *ckdProc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &ckdProc{dir: dir, name: host, hcl: clusterHCL, cfg: filepath.Join(dir, "ckd.hcl"),
		data: filepath.Join(dir, "data"), socket: filepath.Join(dir, "ckd.sock"), logf: filepath.Join(dir, "ckd.log"),
		command: func(name string, args ...string) *exec.Cmd { return lab.Command(host, name, args...) }}
	n.start(t)
	return n
}

// awaitMembers waits until every node sees want members alive.
func awaitMembers(t *testing.T, want int, nodes ...*ckdProc) {
	t.Helper()
	clients := make([]*rpc.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = n.c
	}
	awaitAlive(t, clients, want)
}

// TestHostsReplicate runs ckd on separate network hosts (namespaces on a
// bridge) in broadcast and multicast mode: the nodes find each other on
// the wire, and a set on one host is readable on the others.
func TestHostsReplicate(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons in network namespaces; skipped with -short")
	}
	lab := netlab.New(t, "h1", "h2", "h3")
	for _, mode := range []string{"broadcast", "multicast"} {
		t.Run(mode, func(t *testing.T) {
			hcl := fmt.Sprintf(`cluster {
  name      = "hosts-%08x"
  transport = %q
  interface = "ck0"
  port      = %d
  insecure  = true
}
`, rand.Uint32(), mode, 20000+rand.IntN(40000))
			hosts := []string{"h1", "h2", "h3"}
			if mode == "broadcast" {
				hosts = hosts[:2]
			}
			var nodes []*ckdProc
			for _, h := range hosts {
				nodes = append(nodes, startOnHost(t, lab, h, hcl))
			}
			awaitMembers(t, len(nodes), nodes...)
			ctx := context.Background()
			if _, err := nodes[0].client().Put(ctx, "bla", []byte("blub"), rpc.WriteOptions{Wait: len(nodes) - 1}); err != nil {
				t.Fatalf("set with --wait %d: %v", len(nodes)-1, err)
			}
			for _, n := range nodes[1:] {
				v, _, _, err := n.client().GetRaw(ctx, "bla", false)
				if err != nil || string(v) != "blub" {
					t.Errorf("%s: get bla = %q, %v", n.name, v, err)
				}
				ms, _ := n.client().Members(ctx)
				for _, m := range ms {
					if !m.Self && !strings.HasPrefix(m.Addr, lab.Addr(m.Name)+":") {
						t.Errorf("%s lists %s at %s, want its host address %s", n.name, m.Name, m.Addr, lab.Addr(m.Name))
					}
				}
			}
			for _, n := range nodes {
				n.stop(syscall.SIGINT)
			}
		})
	}
}

// TestHostsPartitionHeal runs three hosts in multicast mode with a cluster
// key, and a fourth host with another key; it cuts one host's link, writes
// on both sides (one key on both, others on one side only), restores the
// link, and waits for every host to converge: the key written on both
// sides holds the set_union merge of examples/hooks everywhere. The host
// with the wrong key learns nothing and changes nothing.
func TestHostsPartitionHeal(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons in network namespaces; skipped with -short")
	}
	union, err := filepath.Abs("../../examples/hooks/set_union.lua")
	if err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t, "h1", "h2", "h3", "h4")
	name, port := fmt.Sprintf("heal-%08x", rand.Uint32()), 20000+rand.IntN(40000)
	hcl := func(key string) string {
		return fmt.Sprintf(`cluster {
  name          = %q
  interface     = "ck0"
  port          = %d
  encrypt       = %q
  heartbeat     = "200ms"
  dead_after    = "2s"
  sync_interval = "200ms"
}
hook "sets/*" {
  script  = %q
  timeout = "10s" # not a timeout test: a loaded -race run can pass 50ms
}
`, name, port, key, union)
	}
	key := seal.GenerateKey()
	var nodes []*ckdProc
	for _, h := range []string{"h1", "h2", "h3"} {
		nodes = append(nodes, startOnHost(t, lab, h, hcl(key)))
	}
	intruder := startOnHost(t, lab, "h4", hcl(seal.GenerateKey()))
	awaitMembers(t, 3, nodes...)
	ctx := context.Background()
	put := func(n *ckdProc, key, value string) {
		t.Helper()
		if _, err := n.client().Put(ctx, key, []byte(value), rpc.WriteOptions{}); err != nil {
			t.Fatalf("%s: set %s: %v", n.name, key, err)
		}
	}
	lab.Cut("h3")
	time.Sleep(3 * time.Second) // h3 is gone for the others, and they for it
	put(nodes[0], "sets/tags", `["from-h1"]`)
	put(nodes[2], "sets/tags", `["from-h3"]`)
	put(nodes[1], "one/h2", "only on the majority side")
	put(nodes[2], "one/h3", "only on the cut host")
	put(intruder, "sets/tags", `["forged"]`)
	put(intruder, "one/h2", "forged")
	lab.Restore("h3")
	want := map[string]string{
		"sets/tags": `["from-h1","from-h3"]`,
		"one/h2":    "only on the majority side",
		"one/h3":    "only on the cut host",
	}
	for _, n := range nodes {
		for key, v := range want {
			awaitValue(t, n, key, v)
		}
	}
	if _, _, _, err := intruder.client().GetRaw(ctx, "one/h3", false); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("the host with another key learned a value: %v", err)
	}
	if ms, _ := nodes[0].client().Members(ctx); len(ms) != 3 {
		t.Errorf("h1 lists %d members, want 3 (not the host with another key)", len(ms))
	}
}

// TestHostsEncryptedTutorial is the seed's tutorial across hosts with a
// cluster key (ckctl keygen), in broadcast mode: start a node on host 1,
// set and get; start host 2, which synchronises; stop host 1 — host 2
// still answers, fresh reads too; write on host 2, restart host 1, which
// catches up. Then a host with another key joins the network: it learns
// nothing and changes nothing.
func TestHostsEncryptedTutorial(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons in network namespaces; skipped with -short")
	}
	out, err := exec.Command(filepath.Join(binDir, "ckctl"), "keygen").Output()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(out))
	wrong, _ := exec.Command(filepath.Join(binDir, "ckctl"), "keygen").Output()
	lab := netlab.New(t, "h1", "h2", "h3")
	port := 20000 + rand.IntN(40000)
	cfg := func(k string) string {
		return fmt.Sprintf(`cluster {
  name      = "tutorial"
  transport = "broadcast"
  interface = "ck0"
  port      = %d
  encrypt   = %q
  heartbeat = "300ms"
  dead_after = "3s"
}
`, port, k)
	}
	ctx := context.Background()
	h1 := startOnHost(t, lab, "h1", cfg(key))
	if _, err := h1.client().Put(ctx, "bla", []byte("blub"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h2 := startOnHost(t, lab, "h2", cfg(key))
	awaitValue(t, h2, "bla", "blub")
	h1.stop(syscall.SIGINT)
	if v, _, _, err := h2.client().GetRaw(ctx, "bla", true); err != nil || string(v) != "blub" {
		t.Fatalf("h2, h1 stopped: get --fresh bla = %q, %v", v, err)
	}
	if _, err := h2.client().Put(ctx, "while/h1/away", []byte("yes"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h1 = restartOnHost(t, lab, h1)
	awaitValue(t, h1, "while/h1/away", "yes")

	// Another key on the same wire: it hears frames it cannot open.
	h3 := startOnHost(t, lab, "h3", cfg(strings.TrimSpace(string(wrong))))
	if _, err := h3.client().Put(ctx, "bla", []byte("forged"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // several heartbeats and sync intervals
	for _, n := range []*ckdProc{h1, h2} {
		if v, _, _, _ := n.client().GetRaw(ctx, "bla", false); string(v) != "blub" {
			t.Errorf("%s: bla = %q after a node with another key wrote it", n.name, v)
		}
		ms, _ := n.client().Members(ctx)
		for _, m := range ms {
			if m.Name == "h3" {
				t.Errorf("%s lists the node with another key as a member", n.name)
			}
		}
	}
	if _, _, _, err := h3.client().GetRaw(ctx, "while/h1/away", false); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("the node with another key learned a value: %v", err)
	}
	metrics, _ := h1.client().Metrics(ctx)
	if !strings.Contains(metrics, `ck_datagrams_dropped_total{reason="key"}`) {
		t.Errorf("h1 counts no frame dropped for its key")
	}
	if strings.Contains(metrics, key) || strings.Contains(h1.log(), key) {
		t.Errorf("the cluster key appears in metrics or logs")
	}
}

func awaitValue(t *testing.T, n *ckdProc, key, want string) {
	t.Helper()
	eventually(t, 20*time.Second, n.name, valueIs(n.c, key, want))
}

// restartOnHost starts a stopped node again on its data dir and config.
func restartOnHost(t *testing.T, lab *netlab.Lab, old *ckdProc) *ckdProc {
	t.Helper()
	old.start(t)
	return old
}

// TestHostsEphemeralPartition: a host's ephemeral key, on two hosts in
// network namespaces. Cutting the owner's link hides the key on the other
// host once the owner is gone there (dead_after), while the owner still
// reads it; restoring the link brings it back, with no action by anyone.
func TestHostsEphemeralPartition(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons in network namespaces; skipped with -short")
	}
	lab := netlab.New(t, "h1", "h2")
	hcl := fmt.Sprintf(`cluster {
  name          = %q
  interface     = "ck0"
  port          = %d
  encrypt       = %q
  heartbeat     = "200ms"
  dead_after    = "2s"
  sync_interval = "200ms"
}
`, fmt.Sprintf("eph-%08x", rand.Uint32()), 20000+rand.IntN(40000), seal.GenerateKey())
	h1, h2 := startOnHost(t, lab, "h1", hcl), startOnHost(t, lab, "h2", hcl)
	awaitMembers(t, 2, h1, h2)
	ctx := context.Background()
	if _, err := h1.client().Put(ctx, "hosts/h1/addr", []byte(lab.Addr("h1")), rpc.WriteOptions{Ephemeral: true, Wait: 1}); err != nil {
		t.Fatalf("ephemeral set on h1: %v", err)
	}
	awaitValue(t, h2, "hosts/h1/addr", lab.Addr("h1"))

	lab.Cut("h1")
	cut := time.Now()
	eventually(t, 20*time.Second, "h2 hides h1's ephemeral key while h1 is cut off", func() error {
		_, _, _, err := h2.client().GetRaw(ctx, "hosts/h1/addr", false)
		if errors.Is(err, rpc.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("get: %v", err)
	})
	t.Logf("hidden on h2 %v after the cut (dead_after 2s)", time.Since(cut).Round(time.Millisecond))
	awaitValue(t, h1, "hosts/h1/addr", lab.Addr("h1")) // its owner still holds it

	lab.Restore("h1")
	awaitValue(t, h2, "hosts/h1/addr", lab.Addr("h1"))
}
