package rpc_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// The server's cost per request on its Unix socket, with an in-memory
// backend, from 16 keep-alive connections written and read directly (as
// cmd/ckbench's raw client does): what the HTTP/1.1 path costs, without
// the store. "fast" requests take the fast path (fastpath.go); "nethttp"
// ones add a query flag the handlers ignore but the fast path does not
// take (?raw=1, ?wait=0), so net/http serves them. cpu-µs/op is the
// process's CPU time (user + system, client included) per request, which
// a shared machine disturbs less than ns/op; allocs/op counts the
// client's too (none after warm-up).
//
//	go test ./rpc -run XXX -bench Server -benchmem

func BenchmarkServerGet(b *testing.B) {
	b.Run("fast", func(b *testing.B) { benchServer(b, "GET", "?raw") })
	b.Run("nethttp", func(b *testing.B) { benchServer(b, "GET", "?raw=1") })
}

func BenchmarkServerPut(b *testing.B) {
	b.Run("fast", func(b *testing.B) { benchServer(b, "PUT", "") })
	b.Run("fast-wait", func(b *testing.B) { benchServer(b, "PUT", "?timeout=5s&wait=0") })
	b.Run("nethttp", func(b *testing.B) { benchServer(b, "PUT", "?nethttp") })
}

// cpuTime is the process's user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchServer(b *testing.B, method, query string) {
	be := rpctest.NewBackend()
	srv := rpctest.Start(b, be, rpc.ServerOptions{})
	value := bytes.Repeat([]byte("v"), 256)
	for i := range 1000 {
		if _, err := be.Put(context.Background(), "bench/"+strconv.Itoa(i), value, rpc.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(8) // 16 connections on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	defer func() {
		b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		c, err := dialBench(srv.Socket)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.conn.Close()
		for pb.Next() {
			key := "bench/" + strconv.Itoa(int(next.Add(1)%1000))
			if err := c.roundTrip(method, key, query, value); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchConn is one keep-alive connection speaking just enough HTTP/1.1.
type benchConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	body []byte
}

func dialBench(socket string) (*benchConn, error) {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	return &benchConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}, nil
}

func (c *benchConn) roundTrip(method, key, query string, value []byte) error {
	c.w.WriteString(method)
	c.w.WriteString(" /v1/kv/")
	c.w.WriteString(key)
	c.w.WriteString(query)
	c.w.WriteString(" HTTP/1.1\r\nHost: ckd\r\n")
	if method == "PUT" {
		c.w.WriteString("Content-Length: ")
		c.w.WriteString(strconv.Itoa(len(value)))
		c.w.WriteString("\r\n\r\n")
		c.w.Write(value)
	} else {
		c.w.WriteString("\r\n")
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(h, []byte("Content-Length: ")); ok {
			if length, err = strconv.Atoi(string(v)); err != nil {
				return err
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("no Content-Length")
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	_, err = io.ReadFull(c.r, c.body[:length])
	return err
}
