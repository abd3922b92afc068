//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// The event-loop client (-client loop). redis-benchmark drives all its
// clients from one thread: epoll says which connections have an answer,
// it reads each answer and writes that client's next request, two system
// calls per request and one epoll_wait for all that are ready. The raw
// client is a goroutine per connection on Go's network poller, which also
// tries a read that finds nothing after each request, parks the goroutine
// and wakes it again, ~4-6 µs of CPU per request more on this machine's
// two cores, which the daemon under test shares. runLoop drives the same
// requests (the same keys, values and answers checked) the way
// redis-benchmark does, so that a comparison of ckd with Redis spends the
// same on its load generator (docs/BENCHMARKS.md, "Issue 12: one node").

// loopConn is one client of the loop: a non-blocking Unix socket, the
// request it is waiting on and the answer read so far.
type loopConn struct {
	fd    int
	rng   *rand.Rand
	out   []byte // the request being sent
	in    []byte // the answer so far
	start time.Time
	lat   []time.Duration
	op    string // method and key of the request, for errors
}

// runLoop runs one workload of runTest from one goroutine locked to its
// thread.
func runLoop(ctx context.Context, cfg config, k kind) (result, error) {
	value := makeValue(cfg.size, cfg.jsonValues)
	if k != kindSet {
		if err := fill(ctx, cfg, value); err != nil {
			return result{}, fmt.Errorf("filling the keyspace: %w", err)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return result{}, fmt.Errorf("epoll: %w", err)
	}
	defer syscall.Close(ep)
	conns := make([]*loopConn, cfg.clients)
	byFD := map[int]*loopConn{}
	defer func() {
		for _, c := range conns {
			if c != nil {
				syscall.Close(c.fd)
			}
		}
	}()
	for i := range conns {
		fd, err := dialLoop(ctx, cfg.socket)
		if err != nil {
			return result{}, err
		}
		c := &loopConn{fd: fd, rng: rand.New(rand.NewPCG(uint64(i), 1)),
			lat: make([]time.Duration, 0, cfg.requests/cfg.clients+1)}
		conns[i], byFD[fd] = c, c
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return result{}, fmt.Errorf("epoll: %w", err)
		}
	}
	var (
		issued, answered, errs int
		first                  error
	)
	// send writes c's next request, if any is left; false: c is done.
	send := func(c *loopConn) (bool, error) {
		if issued >= cfg.requests {
			return false, nil
		}
		issued++
		key := cfg.prefix + strconv.Itoa(c.rng.IntN(cfg.keys))
		read := c.rng.IntN(100) < cfg.readPct
		c.out = appendRequest(c.out[:0], k, key, value, read, cfg.wait)
		c.op = key
		c.start = time.Now()
		for b := c.out; len(b) > 0; {
			n, err := syscall.Write(c.fd, b)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN: // a full socket buffer, which a request is far smaller than
				time.Sleep(50 * time.Microsecond)
				continue
			case err != nil:
				return false, fmt.Errorf("sending a request: %w", err)
			}
			b = b[n:]
		}
		return true, nil
	}
	busy := 0
	start := time.Now()
	for _, c := range conns {
		ok, err := send(c)
		if err != nil {
			return result{}, err
		}
		if ok {
			busy++
		}
	}
	events := make([]syscall.EpollEvent, len(conns))
	buf := make([]byte, 64<<10)
	for busy > 0 {
		if err := ctx.Err(); err != nil {
			return result{}, err
		}
		n, err := syscall.EpollWait(ep, events, 100)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return result{}, fmt.Errorf("epoll: %w", err)
		}
		for _, ev := range events[:n] {
			c := byFD[int(ev.Fd)]
			r, err := syscall.Read(c.fd, buf)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if err != nil || r == 0 {
				if err == nil {
					err = errors.New("the daemon closed the connection")
				}
				return result{}, fmt.Errorf("reading an answer: %w", err)
			}
			c.in = append(c.in, buf[:r]...)
			status, used, keep, err := parseAnswer(c.in)
			if err != nil {
				return result{}, err
			}
			if used == 0 { // not whole yet
				continue
			}
			c.lat = append(c.lat, time.Since(c.start))
			answered++
			if status/100 != 2 {
				errs++
				if first == nil {
					first = fmt.Errorf("%s: status %d: %s", c.op, status, bytes.TrimSpace(c.in[:used]))
				}
			}
			if used != len(c.in) {
				return result{}, errors.New("an answer came with bytes after it")
			}
			c.in = c.in[:0]
			if !keep {
				return result{}, errors.New("the daemon closed the connection after an answer")
			}
			ok, err := send(c)
			if err != nil {
				return result{}, err
			}
			if !ok {
				busy--
			}
		}
	}
	elapsed := time.Since(start)
	if first != nil && errs >= cfg.requests {
		return result{}, first
	}
	all := make([]time.Duration, 0, answered)
	for _, c := range conns {
		all = append(all, c.lat...)
	}
	slices.Sort(all)
	return summarize(k.String(), cfg.clients, cfg.size, int64(errs), elapsed, all), nil
}

// dialLoop connects to the socket, checks who serves it as every client
// does, and returns the connection's descriptor, non-blocking.
func dialLoop(ctx context.Context, socket string) (int, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
	if err != nil {
		return -1, &rpc.UnreachableError{Socket: socket, Err: err}
	}
	defer conn.Close()
	if err := rpc.CheckServer(conn, socket); err != nil {
		return -1, err
	}
	rc, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	// The duplicate shares the open file and its O_NONBLOCK; the
	// connection's own descriptor closes with conn.
	return fd, syscall.SetNonblock(fd, true)
}

// appendRequest appends the request rawConn would send for one operation.
func appendRequest(b []byte, k kind, key string, value []byte, read bool, wait int) []byte {
	get := k == kindGet || k == kindFresh || k == kindMixed && read
	if get {
		b = append(b, "GET /v1/kv/"...)
	} else {
		b = append(b, "PUT /v1/kv/"...)
	}
	b = append(b, escapeKey(key)...)
	switch {
	case k == kindFresh:
		b = append(b, "?raw&fresh"...)
	case get:
		b = append(b, "?raw"...)
	case wait > 0:
		b = strconv.AppendInt(append(b, "?wait="...), int64(wait), 10)
	}
	b = append(b, " HTTP/1.1\r\nHost: ckd\r\n"...)
	if !get {
		b = append(b, "Content-Type: application/octet-stream\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(value)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !get {
		b = append(b, value...)
	}
	return b
}

// parseAnswer looks for one whole answer with a Content-Length at the
// start of b: used is its length (0: not whole yet), keep whether the
// connection stays open. The daemon gives every answer to a key request a
// length (it holds back up to 8 KiB to do so).
func parseAnswer(b []byte) (status, used int, keep bool, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, 0, false, nil
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = atoi(line[9:12]); err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = atoi(value); err != nil {
				return 0, 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, 0, false, errors.New("a chunked answer: the loop client reads answers with a length only (use -client raw)")
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
	if length < 0 {
		return 0, 0, false, errors.New("answer without a length")
	}
	if len(b) < end+4+length {
		return 0, 0, false, nil
	}
	return status, end + 4 + length, keep, nil
}
