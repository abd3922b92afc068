package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The systems ckd is compared with (cmd/ckbench/replicated.sh), driven
// through the same load loop (runTest) as ckd: puts only.
//
// etcd through its HTTP/JSON gateway (POST /v3/kv/put), spoken over a
// lean keep-alive connection like rawConn's, rather than etcd's Go
// client: that client brings gRPC and etcd's API modules (dozens of
// modules into go.mod for a benchmark tool), and on a 2-core host it
// would also cost the load generator more CPU per request than the lean
// HTTP/1.1 of the ckd side, which skews a side-by-side figure. The
// gateway answers a put once the Raft entry is committed (a majority has
// it in its fsynced WAL) and applied.
//
// NATS JetStream KV through nats.go (already in go.mod for the NATS
// bridge): kv.Put waits for the stream's publish acknowledgement, which
// an R3 stream gives once a quorum of its replicas stored the message.

// etcdConn puts over one keep-alive TCP connection to an etcd member.
type etcdConn struct {
	rawConn
	addr string // host:port
	buf  []byte
}

func newEtcdConn(endpoint string) (*etcdConn, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad etcd endpoint %q: want http://host:port", endpoint)
	}
	return &etcdConn{addr: u.Host}, nil
}

func (c *etcdConn) get(context.Context, string) error   { return errors.New("etcd: puts only") }
func (c *etcdConn) fresh(context.Context, string) error { return errors.New("etcd: puts only") }

func (c *etcdConn) set(ctx context.Context, key string, value []byte, _ int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.conn == nil {
		conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 16<<10)
	}
	b := append(c.buf[:0], `{"key":"`...)
	b = base64.StdEncoding.AppendEncode(b, []byte(key))
	b = append(b, `","value":"`...)
	b = base64.StdEncoding.AppendEncode(b, value)
	b = append(b, `"}`...)
	c.buf = b
	w := c.w
	w.WriteString("POST /v3/kv/put HTTP/1.1\r\nHost: ")
	w.WriteString(c.addr)
	w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(b)))
	w.WriteString("\r\n\r\n")
	w.Write(b)
	err := w.Flush()
	var status int
	keep := false
	if err == nil {
		status, keep, err = c.readAnswer()
	}
	if err == nil && status != 200 {
		err = fmt.Errorf("etcd put %s: status %d: %s", key, status, strings.TrimSpace(string(c.body)))
	}
	if err != nil || !keep {
		c.close()
	}
	return err
}

// natsKV puts into a JetStream KV bucket over its own connection.
type natsKV struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

// natsBucket is the bucket ckbench puts into.
const natsBucket = "ckbench"

// prepareNATS creates the bucket (replicas, file storage) if it is not
// there; the KV default of one message per key is kept.
func prepareNATS(ctx context.Context, url string, replicas int) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: natsBucket, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	return err
}

func newNATSKV(url string) (*natsKV, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, natsBucket)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsKV{nc: nc, kv: kv}, nil
}

func (n *natsKV) get(context.Context, string) error   { return errors.New("nats: puts only") }
func (n *natsKV) fresh(context.Context, string) error { return errors.New("nats: puts only") }

func (n *natsKV) set(ctx context.Context, key string, value []byte, _ int) error {
	_, err := n.kv.Put(ctx, strings.ReplaceAll(key, "/", "."), value)
	return err
}

func (n *natsKV) close() { n.nc.Close() }
