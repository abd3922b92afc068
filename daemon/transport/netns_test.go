//go:build linux

package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Real broadcast and multicast between hosts: network namespaces, each
// with a veth into a bridge that lives in a namespace of its own, so
// nothing of the test touches the host's interfaces. Two nodes share
// namespace a (the shared-port case), one is alone in b; each node is the
// test binary re-executed in its namespace (TestHelperProcess).
func TestNetns(t *testing.T) {
	lab := newNetLab(t, "a", "b")
	for _, mode := range []string{ModeBroadcast, ModeMulticast} {
		t.Run(mode, func(t *testing.T) {
			port := 20000 + rand.IntN(40000)
			group := randomGroup()
			t.Logf("port %d, group %v", port, group)
			hs := []*helper{
				lab.start(t, "a", "a1", mode, port, group),
				lab.start(t, "a", "a2", mode, port, group),
				lab.start(t, "b", "b1", mode, port, group),
			}
			waitFor(t, 20*time.Second, func() error {
				for _, h := range hs {
					for _, o := range hs {
						if h == o {
							continue
						}
						// HELLO: o's broadcast reached h; ACK: h's unicast
						// reply to the source it saw reached o.
						if err := h.heard("HELLO", o); err != nil {
							return err
						}
						if err := o.heard("ACK", h); err != nil {
							return err
						}
					}
				}
				return nil
			})
		})
	}
}

// netLab is a set of network namespaces on one bridge.
type netLab struct {
	ns     map[string]string // host -> namespace
	prefix string            // 10.x.y.
}

// newNetLab creates a namespace with a bridge and one namespace per host,
// with address 10.x.y.(i+1)/24 on its interface ck0. Everything is removed
// in t.Cleanup, failure or not.
func newNetLab(t *testing.T, hosts ...string) *netLab {
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) not found")
	}
	id := fmt.Sprintf("ck-%06x", rand.IntN(1<<24))
	br := id + "-br"
	if out, err := exec.Command("ip", "netns", "add", br).CombinedOutput(); err != nil {
		t.Skipf("skipping: ip netns add is not permitted here: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { ip(t, "netns", "del", br) })
	ip(t, "-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ip(t, "-n", br, "link", "set", "br0", "up")

	lab := &netLab{ns: map[string]string{}, prefix: fmt.Sprintf("10.%d.%d.", rand.IntN(256), rand.IntN(256))}
	for i, h := range hosts {
		ns := id + "-" + h
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { ip(t, "netns", "del", ns) })
		veth := fmt.Sprintf("v%d", i)
		ip(t, "-n", br, "link", "add", veth, "type", "veth", "peer", "name", "ck0", "netns", ns)
		ip(t, "-n", br, "link", "set", veth, "master", "br0", "up")
		ip(t, "-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", lab.prefix, i+1), "dev", "ck0")
		ip(t, "-n", ns, "link", "set", "ck0", "up")
		ip(t, "-n", ns, "link", "set", "lo", "up")
		lab.ns[h] = ns
	}
	t.Logf("namespaces %s-*, subnet %s0/24", id, lab.prefix)
	return lab
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// helper is a node running in a namespace. It reports on stdout:
// "ADDR addr", "HELLO name from" for each node it heard broadcast, "ACK
// name from" for each unicast reply; it stops when its stdin closes.
type helper struct {
	name string
	mu   sync.Mutex
	addr string
	seen map[string]bool // "HELLO a2 10.1.2.1:4000"
	out  []string
}

const helperEnv = "CK_TRANSPORT_HELPER"

func (lab *netLab) start(t *testing.T, host, name, mode string, port int, group netip.Addr) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", lab.ns[host], exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+name, "CK_HELPER_MODE="+mode, "CK_HELPER_PORT="+strconv.Itoa(port), "CK_HELPER_GROUP="+group.String())
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0") // under -race, exit at once
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{name: name, seen: map[string]bool{}}
	read := make(chan struct{})
	go func() {
		defer close(read)
		h.read(stdout)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-read:
		case <-time.After(10 * time.Second):
			t.Errorf("helper %s (pid %d) did not stop; killing it", name, cmd.Process.Pid)
			cmd.Process.Kill()
			<-read
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("helper %s stdout:\n%s\nstderr:\n%s", name, strings.Join(h.out, "\n"), stderr.String())
		}
	})
	return h
}

func (h *helper) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		h.mu.Lock()
		h.out = append(h.out, line)
		if a, ok := strings.CutPrefix(line, "ADDR "); ok {
			h.addr = a
		}
		h.seen[line] = true
		h.mu.Unlock()
	}
}

// heard checks that h got a kind message from o, from o's unicast address.
func (h *helper) heard(kind string, o *helper) error {
	o.mu.Lock()
	from := o.addr
	o.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if from == "" || !h.seen[kind+" "+o.name+" "+from] {
		return fmt.Errorf("%s has no %s from %s (%s)", h.name, kind, o.name, from)
	}
	return nil
}

// TestHelperProcess is a node for TestNetns, not a test: it does nothing
// unless started by one.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv(helperEnv)
	if name == "" {
		return
	}
	port, _ := strconv.Atoi(os.Getenv("CK_HELPER_PORT"))
	u, err := New(Config{
		Mode:      os.Getenv("CK_HELPER_MODE"),
		Interface: "ck0",
		Group:     netip.MustParseAddr(os.Getenv("CK_HELPER_GROUP")),
		Port:      port,
	})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	defer u.Close()
	fmt.Println("ADDR", u.Addr())

	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute) // never outlive a lost parent for long
	printed := map[string]bool{}
	for {
		select {
		case <-stop:
			return
		case <-deadline:
			return
		case <-tick.C:
			u.Broadcast([]byte("HELLO " + name))
		case p := <-u.Packets():
			msg := string(p.Buf)
			if strings.HasPrefix(msg, "HELLO ") {
				u.SendTo(p.From, []byte("ACK "+name))
			}
			if line := msg + " " + p.From.String(); !printed[line] {
				printed[line] = true
				fmt.Println(line)
			}
		}
	}
}
