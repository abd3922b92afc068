//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport/netlab"
	"github.com/cloudknowledge/ck/rpc"
)

// hostNode is a ckd running on a lab host (its own network namespace);
// its data dir and socket are on the shared file system.
type hostNode struct {
	name, dir, sock string
	cmd             *exec.Cmd
	exited          chan error
}

// startOnHost starts ckd in host's namespace with the given cluster block
// and waits until its API answers.
func startOnHost(t *testing.T, lab *netlab.Lab, host, clusterHCL string) *hostNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ckd.hcl")
	if err := os.WriteFile(cfg, []byte(clusterHCL), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &hostNode{name: host, dir: dir, sock: filepath.Join(dir, "ckd.sock"), exited: make(chan error, 1)}
	n.cmd = lab.Command(host, filepath.Join(binDir, "ckd"), "-config", cfg, "-data-dir", filepath.Join(dir, "data"),
		"-socket", n.sock, "-node-name", host)
	logf, err := os.Create(filepath.Join(dir, "ckd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() { n.stop() })
	if err := awaitHealthy(n.sock, n.exited, 15*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "ckd.log"))
		t.Fatalf("ckd on %s: %v\n%s", host, err, b)
	}
	return n
}

func (n *hostNode) stop() {
	select {
	case err := <-n.exited:
		n.exited <- err
		return
	default:
	}
	n.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-n.exited:
		n.exited <- err
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
	}
}

func (n *hostNode) client() *rpc.Client { return rpc.NewClient(n.sock) }

// awaitMembers waits until every node sees want members alive.
func awaitMembers(t *testing.T, want int, nodes ...*hostNode) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			ms, err := n.client().Members(context.Background())
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if err == nil && alive == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d members alive, want %d: %+v (err %v)", n.name, alive, want, ms, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestHostsReplicate runs ckd on separate network hosts (namespaces on a
// bridge) in broadcast and multicast mode: the nodes find each other on
// the wire, and a set on one host is readable on the others.
func TestHostsReplicate(t *testing.T) {
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
			var nodes []*hostNode
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
				n.stop()
			}
		})
	}
}

// TestHostsPartitionHeal cuts one host's link, writes on both sides (one
// key on both, others on one side only), restores the link, and waits for
// every host to converge: the key written on both sides holds the
// set_union merge of examples/hooks everywhere.
func TestHostsPartitionHeal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real daemons in network namespaces; skipped with -short")
	}
	union, err := filepath.Abs("../../examples/hooks/set_union.lua")
	if err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t, "h1", "h2", "h3")
	hcl := fmt.Sprintf(`cluster {
  name          = "heal-%08x"
  interface     = "ck0"
  port          = %d
  insecure      = true
  heartbeat     = "200ms"
  dead_after    = "2s"
  sync_interval = "200ms"
}
hook "sets/*" {
  script = %q
}
`, rand.Uint32(), 20000+rand.IntN(40000), union)
	var nodes []*hostNode
	for _, h := range []string{"h1", "h2", "h3"} {
		nodes = append(nodes, startOnHost(t, lab, h, hcl))
	}
	awaitMembers(t, 3, nodes...)
	ctx := context.Background()
	put := func(n *hostNode, key, value string) {
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
	lab.Restore("h3")
	want := map[string]string{
		"sets/tags": `["from-h1","from-h3"]`,
		"one/h2":    "only on the majority side",
		"one/h3":    "only on the cut host",
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for key, v := range want {
			for {
				got, _, _, err := n.client().GetRaw(ctx, key, false)
				if err == nil && string(got) == v {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s = %q (err %v), want %q after the heal", n.name, key, got, err, v)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}
