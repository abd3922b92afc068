package rpc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// The fast path answers what net/http answers: the same requests, sent
// byte for byte to the socket (fast path) and to the same handlers behind
// net/http alone (Handler), get the same status, headers (but Date) and
// body.
func TestFastPathMatchesNetHTTP(t *testing.T) {
	same := twoPaths(t, false)
	for _, req := range fastPathRequests {
		same(t, req)
	}
}

// FuzzFastPath sends any request to both paths: their answers must match.
// The client closes its side after the request, so that a server waiting
// for the rest of one sees the end at once; whether the answer then says
// "Connection: close" is not compared (the connection is over either way:
// net/http says so in some of these cases, the fast path does not).
func FuzzFastPath(f *testing.F) {
	for _, req := range fastPathRequests {
		f.Add(req)
	}
	same := twoPaths(f, true)
	f.Fuzz(func(t *testing.T, req string) { same(t, req) })
}

// twoPaths serves two like backends, one through the socket (fast path)
// and one through Handler alone (net/http), and returns a check that a
// request gets the same answer from both.
func twoPaths(tb testing.TB, halfClose bool) func(t *testing.T, req string) {
	opts := rpc.ServerOptions{MaxValueSize: 64, MaxRequestBytes: 64, BodyTimeout: time.Second}
	fastBackend, slowBackend := rpctest.NewBackend(), rpctest.NewBackend()
	for _, b := range []*rpctest.Backend{fastBackend, slowBackend} {
		for _, kv := range [][2]string{{"app/a", "1"}, {"bin", "\xff\x00\xfe"}} {
			if _, err := b.Put(context.Background(), kv[0], []byte(kv[1]), rpc.WriteOptions{}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	fast := rpctest.Serve(tb, fastBackend, opts)
	hs := httptest.NewServer(rpc.NewServer(slowBackend, nil, opts).Handler())
	tb.Cleanup(hs.Close)
	return func(t *testing.T, req string) {
		t.Helper()
		fstatus, fhead, fbody := answerOf(t, "unix", fast.Socket, req, halfClose)
		sstatus, shead, sbody := answerOf(t, "tcp", strings.TrimPrefix(hs.URL, "http://"), req, halfClose)
		name := strings.SplitN(req, "\r\n", 2)[0]
		if fstatus != sstatus || fbody != sbody || fhead != shead {
			t.Errorf("%q:\nfast     %s %s %q\nnet/http %s %s %q", name, fstatus, fhead, fbody, sstatus, shead, sbody)
		}
	}
}

// answerOf sends req on a new connection and reads its final answer: its
// status, its headers but Date (sorted, and unless halfClose whether the
// connection closes) and body; "no answer" when there is none. With
// halfClose the client closes its side after the request.
func answerOf(t *testing.T, network, addr, req string, halfClose bool) (status, head, body string) {
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, req)
	if cw, ok := c.(interface{ CloseWrite() error }); ok && halfClose {
		cw.CloseWrite()
	}
	// The final answer, past any 100 Continue: a client that stopped at the
	// 1xx would send its next request while this one's write may still be
	// under way, and the two backends' versions would part by timing.
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		return "no answer", "", ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.Status, "", "unreadable body"
	}
	resp.Header.Del("Date")
	var hs []string
	for k, v := range resp.Header {
		if k != "Connection" || !halfClose {
			hs = append(hs, k+"="+strings.Join(v, ","))
		}
	}
	slices.Sort(hs)
	if !halfClose {
		hs = append(hs, fmt.Sprintf("close=%v", resp.Close))
	}
	return resp.Status, fmt.Sprint(hs), string(b)
}

var head = "HTTP/1.1\r\nHost: ckd\r\n"

// fastPathRequests are requests the fast path answers and requests it
// hands to net/http.
var fastPathRequests = []string{
	"GET /v1/kv/app/a?raw " + head + "\r\n",
	"GET /v1/kv/app/a " + head + "\r\n",
	"GET /v1/kv/bin " + head + "\r\n",
	"GET /v1/kv/missing?raw " + head + "\r\n",
	"GET /v1/kv/app%2Fa " + head + "\r\n",
	"GET /v1/kv/ " + head + "\r\n",
	"GET /v1/kv/bad%zz " + head + "\r\n",
	"PUT /v1/kv/new " + head + "Content-Length: 5\r\n\r\nhello",
	"PUT /v1/kv/bin2 " + head + "Content-Length: 3\r\n\r\n\xff\x00\xfe",
	"PUT /v1/kv/empty " + head + "Content-Length: 0\r\n\r\n",
	"PUT /v1/kv/big " + head + "Content-Length: 65\r\n\r\n" + strings.Repeat("x", 65),
	"PUT /v1/kv/a%20b " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/close " + head + "Connection: close\r\nContent-Length: 1\r\n\r\nx",
	"PUT /v1/kv/raw?raw " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/chunked " + head + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"POST /v1/kv/app/a " + head + "Content-Length: 0\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.0\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\r\n\r\n", // no Host: 400
	"GET /v1/kv/app/a?raw " + head + "X-Big: " + strings.Repeat("y", 5000) + "\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\nHost: ckd\n\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\r\nHost: a#b\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\r\nHost: ckd\r\nBad[name]: x\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\r\nHost: ckd\r\nX: a\x01b\r\n\r\n",
	"GET /v1/kv/app/a?raw HTTP/1.1\r\nHost: ckd\r\nHost: other\r\n\r\n",
	"PUT /v1/kv/two HTTP/1.1\r\nHost: ckd\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"PUT /v1/kv/neg HTTP/1.1\r\nHost: ckd\r\nContent-Length: -1\r\n\r\n",
	"PUT /v1/kv/expect HTTP/1.1\r\nHost: ckd\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	// A replicated write's query (ckctl set --wait N) is the fast path's
	// too; anything else in a PUT's query, or a value writeOptions
	// refuses, goes to net/http.
	"PUT /v1/kv/w0?wait=0 " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w1?timeout=2s&wait=1 " + head + "Content-Length: 1\r\n\r\nx", // no peers: 504, acked 0
	"PUT /v1/kv/w2?wait=0&timeout=1.5s " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w3?timeout=0s " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w4?wait=x " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w5?wait=-1 " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w6?wait=1&wait=2 " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w7?wait= " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w8?wait=99999999999999999999 " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/w9?timeout=soon " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/wa?wait=0&ttl=5s " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/wb?wait=0& " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/wc?wait " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/wd?wait=%31 " + head + "Content-Length: 1\r\n\r\nx",
	"PUT /v1/kv/we?if_version=1 " + head + "Content-Length: 1\r\n\r\nx",
}

// Requests sent back to back on one connection, fast or not, are
// answered in order, and a connection handed to net/http keeps working.
func TestFastPathPipelined(t *testing.T) {
	s := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{})
	c, err := net.Dial("unix", s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	reqs := "PUT /v1/kv/p HTTP/1.1\r\nHost: ckd\r\nContent-Length: 2\r\n\r\nv1" +
		"GET /v1/kv/p?raw HTTP/1.1\r\nHost: ckd\r\n\r\n" +
		"PUT /v1/kv/p?if_version=1 HTTP/1.1\r\nHost: ckd\r\nContent-Length: 2\r\n\r\nv2" + // net/http's from here on
		"GET /v1/kv/p?raw HTTP/1.1\r\nHost: ckd\r\n\r\n"
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range []string{"200 " + `{"key":"p","value":"v1"`, "200 v1", "200 " + `{"key":"p","value":"v2"`, "200 v2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Status[:4] + string(b); !strings.HasPrefix(got, want) {
			t.Errorf("answer %d: %q, want %q...", i, got, want)
		}
	}
}

// Shutdown closes idle fast-path connections at once and lets a request
// in flight finish.
func TestFastPathShutdown(t *testing.T) {
	h := &heldPut{Backend: rpctest.NewBackend(), release: make(chan struct{})}
	dir := shortDir(t)
	ln, err := rpc.Listen(dir+"/ckd.sock", 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(h, nil, rpc.ServerOptions{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	dial := func() net.Conn {
		c, err := net.Dial("unix", dir+"/ckd.sock")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	idle, busy := dial(), dial()
	if _, err := io.WriteString(idle, "GET /v1/kv/x?raw HTTP/1.1\r\nHost: ckd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(idle), nil); err != nil || resp.StatusCode != 404 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	if _, err := io.WriteString(busy, "PUT /v1/kv/x HTTP/1.1\r\nHost: ckd\r\nContent-Length: 1\r\n\r\nv"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.inPut.Load() == 1 })
	down := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		down <- srv.Shutdown(ctx)
	}()
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Errorf("idle connection still open after Shutdown (read %d bytes)", n)
	}
	close(h.release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request in flight at Shutdown: %v %v", resp, err)
	}
	if err := <-down; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
