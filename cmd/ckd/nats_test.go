package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/rpc"
)

// TestNATSBridge runs a real ckd with a nats block against an embedded
// nats-server: ckctl writes show up on NATS subjects with their headers,
// writes sent to NATS land in the store (and answer with the record), and
// ckctl status shows the bridge connected.
func TestNATSBridge(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts a real daemon; skipped with -short")
	}
	ns := startNATSServer(t)

	p := &ckdProc{name: "n1", hcl: fmt.Sprintf(`cluster {
  name = "nats-%08x"
  port = %d
}
nats {
  url       = %q
  subscribe = true
}
`, rand.Uint32(), 20000+rand.IntN(40000), ns.ClientURL())}
	p.start(t)
	defer p.stop(syscall.SIGINT)
	sock := p.sock()

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("ck.kv.>", msgs); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c := rpc.NewClient(sock)
	ctx := context.Background()
	waitState(t, c, "connected")

	rec, err := c.Put(ctx, "app/with space", []byte("v1"), rpc.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.Subject != "ck.kv.app.with~20space" || string(m.Data) != "v1" || m.Header.Get("Ck-Op") != "set" ||
			m.Header.Get("Ck-Version") != fmt.Sprint(rec.Version) || m.Header.Get("Ck-Origin") != rec.Origin {
			t.Errorf("published %s %q %v", m.Subject, m.Data, m.Header)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message on ck.kv.> for a ckctl write")
	}

	reply, err := nc.Request("ck.set.from.nats", []byte("hello"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got rpc.Record
	if err := json.Unmarshal(reply.Data, &got); err != nil || got.Key != "from/nats" || string(got.Value) != "hello" {
		t.Errorf("reply %s (%v)", reply.Data, err)
	}
	if v, _, _, err := c.GetRaw(ctx, "from/nats", false); err != nil || string(v) != "hello" {
		t.Errorf("get from/nats = %q, %v", v, err)
	}
	checkSubscriberExample(t, ns.ClientURL(), c)
}

// checkSubscriberExample runs examples/nats/subscriber and checks that it
// prints a change made with the API.
func checkSubscriberExample(t *testing.T, url string, c *rpc.Client) {
	bin := filepath.Join(t.TempDir(), "subscriber")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/nats/subscriber").CombinedOutput(); err != nil {
		t.Fatalf("building the subscriber example: %v\n%s", err, out)
	}
	var out syncBuffer
	sub := exec.Command(bin, "-url", url)
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sub.Process.Kill(); sub.Wait() }()
	want := `set example/greeting version=`
	if err := poll.For(15*time.Second, 200*time.Millisecond, func() error {
		if strings.Contains(out.String(), want) {
			return nil
		}
		// Until the example has subscribed, changes pass it by: write again.
		if _, err := c.Put(context.Background(), "example/greeting", []byte("hi"), rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("no line with %q", want)
	}); err != nil {
		t.Fatalf("the subscriber example printed %q: %v", out.String(), err)
	}
	if !strings.Contains(out.String(), `value="hi"`) {
		t.Errorf("the subscriber example printed %q", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitState polls (at most 15 s) until the node's NATS bridge is in state want.
func waitState(t *testing.T, c *rpc.Client, want string) {
	t.Helper()
	eventually(t, 15*time.Second, "nats state", func() error {
		st, err := c.Status(context.Background())
		if err == nil && st.NATS == want {
			return nil
		}
		return fmt.Errorf("%q (%v), want %q", st.NATS, err, want)
	})
}

// startNATSServer starts an embedded nats-server on a random loopback port,
// shut down when the test ends.
func startNATSServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}
