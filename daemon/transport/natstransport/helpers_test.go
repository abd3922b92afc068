package natstransport_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/transport/natstransport"
)

// startServer runs an embedded nats-server on a random loopback port
// (port 0: any); it is shut down when the test ends.
func startServer(t testing.TB, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func serverPort(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

// subject is a base subject of its own for each test, so that tests
// sharing nothing never hear each other.
func subject(t testing.TB) string {
	return fmt.Sprintf("test.cluster.c%08x", rand.Uint32())
}

// open starts a transport on url and subject, closed when the test ends.
func open(t testing.TB, url, subj string, adjust ...func(*natstransport.Config)) *natstransport.Transport {
	t.Helper()
	cfg := natstransport.Config{URLs: []string{url}, Subject: subj, Name: t.Name(),
		ReconnectWait: 50 * time.Millisecond, Logger: testLogger(t)}
	for _, f := range adjust {
		f(&cfg)
	}
	tr, err := natstransport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// connected waits until every transport has its connection up.
func connected(t testing.TB, trs ...*natstransport.Transport) {
	t.Helper()
	for _, tr := range trs {
		checkFor(t, 10*time.Second, func() error {
			if !tr.Connected() {
				return fmt.Errorf("%s not connected", tr.Addr())
			}
			return nil
		})
	}
}

// checkFor polls f until it returns nil or wait passes.
func checkFor(t testing.TB, wait time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, wait, 10*time.Millisecond, f)
}

// recv waits for one datagram.
func recv(t testing.TB, tr transport.Transport) transport.Packet {
	t.Helper()
	select {
	case p := <-tr.Packets():
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no datagram within 5s", tr.Addr())
		return transport.Packet{}
	}
}

func testLogger(t testing.TB) hclog.Logger {
	if !testing.Verbose() {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
