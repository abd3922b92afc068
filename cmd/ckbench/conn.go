package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/cloudknowledge/ck/rpc"
)

// A benchmark client sends requests and waits for their answers, one at a
// time, like a redis-benchmark client. Two kinds: rpc.Client (what Go
// programs use) and rawConn, one Unix-socket connection speaking just
// enough HTTP/1.1 for GET and PUT. On a small machine the load generator
// shares the cores with the daemon, and net/http's client costs about as
// much CPU per request as the daemon does; the raw client, like
// redis-benchmark's, leaves the cores to the server under test, so that
// the figures measure ckd. Both answer the same requests.
type benchClient interface {
	get(ctx context.Context, key string) error
	fresh(ctx context.Context, key string) error // a fresh read: every node asked
	set(ctx context.Context, key string, value []byte, wait int) error
	close()
}

// newClient returns a client of the kind named by -client; etcd and nats
// (others.go) talk to those systems at url.
func newClient(kind, socket, url string) (benchClient, error) {
	switch kind {
	case "raw", "loop": // the loop's own tests run in runLoop; the rest (fill, repl, ...) as raw
		return &rawConn{socket: socket}, nil
	case "rpc":
		return rpcClient{rpc.NewClient(socket)}, nil
	case "etcd":
		return newEtcdConn(url)
	case "nats":
		return newNATSKV(url)
	}
	return nil, fmt.Errorf("unknown client %q (want raw, loop, rpc, etcd or nats)", kind)
}

type rpcClient struct{ c *rpc.Client }

func (r rpcClient) get(ctx context.Context, key string) error {
	_, _, _, err := r.c.GetRaw(ctx, key, false)
	return err
}

func (r rpcClient) fresh(ctx context.Context, key string) error {
	_, _, _, err := r.c.GetRaw(ctx, key, true)
	return err
}

func (r rpcClient) set(ctx context.Context, key string, value []byte, wait int) error {
	_, err := r.c.Put(ctx, key, value, rpc.WriteOptions{Wait: wait})
	return err
}

func (r rpcClient) close() { r.c.Close() }

// rawConn is one keep-alive connection. It reads every answer whole
// (Content-Length or chunked) and checks its status; it redials after an
// error or a "Connection: close". The context is checked between requests
// only: a benchmark request does not hang on a live daemon.
type rawConn struct {
	socket string
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	body   []byte // the last answer's body, reused
}

func (c *rawConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawConn) get(ctx context.Context, key string) error {
	return c.do(ctx, "GET", key, "?raw", nil, false)
}

func (c *rawConn) fresh(ctx context.Context, key string) error {
	return c.do(ctx, "GET", key, "?raw&fresh", nil, false)
}

func (c *rawConn) set(ctx context.Context, key string, value []byte, wait int) error {
	q := ""
	if wait > 0 {
		q = "?wait=" + strconv.Itoa(wait)
	}
	return c.do(ctx, "PUT", key, q, value, true)
}

func (c *rawConn) do(ctx context.Context, method, key, query string, body []byte, hasBody bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.conn == nil {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Err != nil {
				err = op.Err
			}
			return &rpc.UnreachableError{Socket: c.socket, Err: err}
		}
		if err := rpc.CheckServer(conn, c.socket); err != nil { // as ckctl: nothing to another user's listener
			conn.Close()
			return err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 16<<10)
	}
	err := c.roundTrip(method, key, query, body, hasBody)
	if err != nil {
		c.close()
	}
	return err
}

func (c *rawConn) roundTrip(method, key, query string, body []byte, hasBody bool) error {
	w := c.w
	w.WriteString(method)
	w.WriteString(" /v1/kv/")
	w.WriteString(escapeKey(key))
	w.WriteString(query)
	w.WriteString(" HTTP/1.1\r\nHost: ckd\r\n")
	if hasBody {
		w.WriteString("Content-Type: application/octet-stream\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return err
	}
	status, keep, err := c.readAnswer()
	if err != nil {
		return err
	}
	if !keep {
		c.close()
	}
	if status/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %s", method, key, status, bytes.TrimSpace(c.body))
	}
	return nil
}

// readAnswer reads one answer into c.body: its status, and whether the
// connection stays open.
func (c *rawConn) readAnswer() (status int, keep bool, err error) {
	line, err := c.line()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = atoi(line[9:12]); err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep := -1, false, true
	for {
		h, err := c.line()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = atoi(value); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		err = c.readChunked()
	case length >= 0:
		c.body = append(c.body, make([]byte, length)...)
		_, err = io.ReadFull(c.r, c.body)
	default:
		return 0, false, errors.New("answer without a length")
	}
	return status, keep, err
}

func (c *rawConn) readChunked() error {
	for {
		line, err := c.line()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the blank line
				if t, err := c.line(); err != nil || len(t) == 0 {
					return err
				}
			}
		}
		at := len(c.body)
		c.body = append(c.body, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, c.body[at:]); err != nil {
			return err
		}
		if crlf, err := c.line(); err != nil || len(crlf) != 0 {
			return fmt.Errorf("bad chunk end %q: %v", crlf, err)
		}
	}
}

// line reads a CRLF-terminated line without the CRLF. It is valid until
// the next read.
func (c *rawConn) line() ([]byte, error) {
	b, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

// atoi parses a non-negative decimal without allocating.
func atoi(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("bad number %q", b)
	}
	n := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, fmt.Errorf("bad number %q", b)
		}
		n = n*10 + int(d-'0')
	}
	return n, nil
}

// escapeKey escapes each "/"-separated segment of key, as rpc.Client does.
func escapeKey(key string) string {
	if !strings.ContainsFunc(key, needsEscape) {
		return key
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
		if s == "." || s == ".." {
			segs[i] = strings.ReplaceAll(s, ".", "%2E")
		}
	}
	return strings.Join(segs, "/")
}

func needsEscape(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '-' || r == '_')
}
