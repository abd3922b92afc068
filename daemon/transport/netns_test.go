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

	"github.com/cloudknowledge/ck/internal/netlab"
)

// Real broadcast and multicast between hosts: network namespaces, each
// with a veth into a bridge that lives in a namespace of its own, so
// nothing of the test touches the host's interfaces. Two nodes share
// namespace a (the shared-port case), one is alone in b; each node is the
// test binary re-executed in its namespace (TestHelperProcess).
func TestNetns(t *testing.T) {
	lab := netlab.New(t, "a", "b")
	for _, mode := range []string{ModeBroadcast, ModeMulticast} {
		t.Run(mode, func(t *testing.T) {
			port := 20000 + rand.IntN(40000)
			group := randomGroup()
			t.Logf("port %d, group %v", port, group)
			hs := []*helper{
				start(t, lab, "a", "a1", mode, port, group),
				start(t, lab, "a", "a2", mode, port, group),
				start(t, lab, "b", "b1", mode, port, group),
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

func start(t *testing.T, lab *netlab.Lab, host, name, mode string, port int, group netip.Addr) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", lab.NS(host), exe, "-test.run=^TestHelperProcess$", "-test.count=1")
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
