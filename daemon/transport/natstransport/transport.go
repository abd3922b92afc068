package natstransport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/transport"
)

// Defaults applied by New to zero fields.
const (
	DefaultWindow        = 1 << 20
	DefaultSendQueue     = 1024
	DefaultReconnectWait = time.Second
	DefaultKeepAlive     = 2 * time.Second
	// maxChunk bounds a data message's payload; smaller when the server's
	// max_payload is.
	maxChunk = 64 << 10
	// closeFlush bounds how long Close waits for queued datagrams (the
	// node's BYE) to reach the server.
	closeFlush = 2 * time.Second
)

// Config configures a NATS transport. Zero values take the defaults named
// on each field.
type Config struct {
	URLs    []string      // NATS servers; at least one
	Options []nats.Option // e.g. credentials and TLS; applied after the transport's own
	Name    string        // connection name
	// Subject is the base of every subject the transport uses (see the
	// package doc), e.g. "ck.cluster.default". Nodes of one cluster must
	// share it; it must be a literal subject.
	Subject string
	// Addr is this node's synthetic address; zero: a random IPv6 ULA and
	// port, new at every start.
	Addr        netip.AddrPort
	MaxDatagram int // as transport.Config.MaxDatagram; default transport.DefaultMaxDatagram
	PacketQueue int // capacity of Packets(); default transport.DefaultPacketQueue
	StreamQueue int // capacity of Streams(); default transport.DefaultStreamQueue
	SendQueue   int // datagrams waiting for the sender; default DefaultSendQueue
	Window      int // a stream's receive window in bytes; default DefaultWindow
	// KeepAlive is how long a stream may hear nothing from its peer before
	// it checks that the peer still listens (keepalive.go); default
	// DefaultKeepAlive.
	KeepAlive time.Duration
	// ReconnectWait is the pause between reconnect attempts (nats.go
	// jitters it); default DefaultReconnectWait.
	ReconnectWait time.Duration
	Logger        hclog.Logger // default: discard
}

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	for _, f := range []struct {
		name     string
		v        *int
		def, max int
	}{
		{"max_datagram", &c.MaxDatagram, transport.DefaultMaxDatagram, maxChunk},
		{"packet_queue", &c.PacketQueue, transport.DefaultPacketQueue, 1 << 20},
		{"stream_queue", &c.StreamQueue, transport.DefaultStreamQueue, 1 << 20},
		{"send_queue", &c.SendQueue, DefaultSendQueue, 1 << 20},
		{"window", &c.Window, DefaultWindow, 1 << 30},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 || *f.v > f.max {
			return c, fmt.Errorf("%s: %d is not in 1..%d", f.name, *f.v, f.max)
		}
	}
	if c.Window < 2*maxChunk {
		return c, fmt.Errorf("window: %d is less than two chunks (%d)", c.Window, 2*maxChunk)
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if len(c.URLs) == 0 {
		return c, errors.New("url: no NATS server")
	}
	if c.Subject == "" || strings.ContainsAny(c.Subject, "*> \t\r\n") || strings.Contains(c.Subject, "..") ||
		strings.HasPrefix(c.Subject, ".") || strings.HasSuffix(c.Subject, ".") {
		return c, fmt.Errorf("subject: %q is not a literal subject", c.Subject)
	}
	if !c.Addr.IsValid() {
		c.Addr = randomAddr()
	}
	c.Addr = netip.AddrPortFrom(c.Addr.Addr().Unmap(), c.Addr.Port())
	return c, nil
}

// randomAddr is a random IPv6 unique local address (fd00::/8) and a
// random non-zero port.
func randomAddr() netip.AddrPort {
	var b [18]byte
	rand.Read(b[:])
	b[0] = 0xfd
	port := binary.BigEndian.Uint16(b[16:]) | 1
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), port)
}

// Transport is the transport.Transport of a cluster on NATS.
type Transport struct {
	cfg   Config
	log   hclog.Logger
	nc    *nats.Conn
	addr  netip.AddrPort
	inbox string // this node's
	all   string // the broadcast subject

	packets chan transport.Packet
	streams chan net.Conn
	out     chan outMsg  // datagrams, resets, accepts: sent by sendLoop
	outMu   sync.RWMutex // held for reading to send on out; Close takes it to close out
	outShut bool
	stats   counters

	mu     sync.Mutex
	conns  map[uint64]*conn // open streams by our id
	nextID uint64

	recvMu   sync.RWMutex // held for reading by the dispatcher; Close takes it to close the channels
	closed   bool
	closing  atomic.Bool
	sendDone chan struct{}
	stop     chan struct{} // closed by Close: ends keepAlive

	closeOnce sync.Once
	closeErr  error
}

type outMsg struct {
	subject string
	data    []byte
}

var _ transport.Transport = (*Transport)(nil)

// New connects to NATS and subscribes to this node's inbox and the
// broadcast subject. It returns without waiting for a server: nats.go
// keeps trying in the background (and reconnects after a loss), and until
// it is connected datagrams are dropped and dials fail.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		cfg: cfg, log: cfg.Logger, addr: cfg.Addr,
		all:      cfg.Subject + ".all",
		packets:  make(chan transport.Packet, cfg.PacketQueue),
		streams:  make(chan net.Conn, cfg.StreamQueue),
		out:      make(chan outMsg, cfg.SendQueue),
		conns:    map[uint64]*conn{},
		sendDone: make(chan struct{}),
		stop:     make(chan struct{}),
	}
	t.inbox = t.inboxOf(t.addr)
	t.nc, err = nats.Connect(strings.Join(cfg.URLs, ","), t.options()...)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	for _, subj := range []string{t.inbox, t.all} {
		if _, err := t.nc.Subscribe(subj, t.dispatch); err != nil {
			t.nc.Close()
			return nil, fmt.Errorf("nats: subscribe %s: %w", subj, err)
		}
	}
	if t.nc.IsConnected() {
		// The server knows our subscriptions before New returns (best
		// effort: a failure here shows as a missed HELLO or two).
		t.nc.FlushTimeout(closeFlush)
	}
	go t.sendLoop()
	go t.keepAlive()
	t.log.Info("transport up", "mode", "nats", "addr", t.addr, "inbox", t.inbox, "broadcast", t.all)
	return t, nil
}

func (t *Transport) options() []nats.Option {
	opts := []nats.Option{
		nats.Name(t.cfg.Name),
		nats.NoEcho(), // our own broadcasts stay here
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(t.cfg.ReconnectWait),
		// While disconnected only resets and acks are queued (datagrams
		// are dropped, streams broken): a small buffer is plenty.
		nats.ReconnectBufSize(1 << 20),
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectOnFlusherError(),
		nats.PingInterval(15 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) { t.log.Info("connected to NATS") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { t.log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted()) }),
		nats.DisconnectErrHandler(t.disconnected),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { t.log.Warn("nats", "error", err) }),
	}
	return append(opts, t.cfg.Options...)
}

// disconnected breaks every open stream: messages in flight may be lost,
// and nothing retransmits them.
func (t *Transport) disconnected(_ *nats.Conn, err error) {
	if t.closing.Load() {
		return
	}
	t.log.Warn("disconnected from NATS: open streams are broken", "error", err)
	for _, c := range t.openConns() {
		c.fail(fmt.Errorf("%w: the connection to NATS was lost", ErrBroken), true)
	}
}

// inboxOf is the subject a node with synthetic address a listens on.
func (t *Transport) inboxOf(a netip.AddrPort) string {
	b := a.Addr().As16()
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], a.Port())
	return t.cfg.Subject + ".node." + hex.EncodeToString(b[:]) + hex.EncodeToString(p[:])
}

// Addr returns this node's synthetic address.
func (t *Transport) Addr() netip.AddrPort { return t.addr }

// Inbox returns the subject this node's unicast traffic goes to.
func (t *Transport) Inbox() string { return t.inbox }

// Connected reports whether the connection to NATS is up.
func (t *Transport) Connected() bool { return t.nc.IsConnected() }

// Packets implements transport.Transport.
func (t *Transport) Packets() <-chan transport.Packet { return t.packets }

// Streams implements transport.Transport. When the channel is full, new
// streams are refused (Stats.StreamsRefused) and the dialer gets
// ErrRefused.
func (t *Transport) Streams() <-chan net.Conn { return t.streams }

// Broadcast queues b for every other node of the cluster. It never
// blocks: with the queue full or NATS unreachable, b is dropped and
// counted (Stats.SendDropped).
func (t *Transport) Broadcast(b []byte) error {
	if len(b) > t.cfg.MaxDatagram {
		return fmt.Errorf("broadcast %d bytes: %w", len(b), transport.ErrTooLarge)
	}
	return t.sendDatagram(t.all, b)
}

// SendTo queues b for one node. Same contract as Broadcast.
func (t *Transport) SendTo(to netip.AddrPort, b []byte) error {
	if len(b) > t.cfg.MaxDatagram {
		return fmt.Errorf("send %d bytes to %s: %w", len(b), to, transport.ErrTooLarge)
	}
	return t.sendDatagram(t.inboxOf(to), b)
}

func (t *Transport) sendDatagram(subject string, b []byte) error {
	if t.closing.Load() {
		return net.ErrClosed
	}
	if !t.nc.IsConnected() {
		t.stats.SendDropped.Add(1)
		return nil
	}
	msg := appendHeader(make([]byte, 0, headerLen+len(b)), header{kind: kindDatagram, from: t.addr})
	if t.enqueue(subject, append(msg, b...)) {
		t.stats.Sent.Add(1)
		t.stats.BytesSent.Add(uint64(len(b)))
	}
	return nil
}

// enqueue hands a message to the sender without waiting; false: dropped.
func (t *Transport) enqueue(subject string, data []byte) bool {
	t.outMu.RLock()
	defer t.outMu.RUnlock()
	if t.outShut {
		return false
	}
	select {
	case t.out <- outMsg{subject, data}:
		return true
	default:
		t.stats.SendDropped.Add(1)
		return false
	}
}

// sendLoop publishes queued messages, so that a publish that has to wait
// for the socket never holds up the protocol.
func (t *Transport) sendLoop() {
	defer close(t.sendDone)
	for m := range t.out {
		t.publish(m.subject, m.data)
	}
}

// publish sends one message now; an error is counted (the stream or the
// protocol notices what is missing).
func (t *Transport) publish(subject string, data []byte) {
	if err := t.nc.Publish(subject, data); err != nil {
		t.stats.SendErrors.Add(1)
		t.log.Debug("publish", "subject", subject, "error", err)
	}
}

// streamMsg builds a stream message from this node.
func (t *Transport) streamMsg(kind byte, dst, src, value uint64, payload []byte) []byte {
	b := appendHeader(make([]byte, 0, streamHeaderLen+len(payload)),
		header{kind: kind, from: t.addr, dst: dst, src: src, value: value})
	return append(b, payload...)
}

// chunkSize is the largest data payload the server takes.
func (t *Transport) chunkSize() int {
	n := maxChunk
	if mp := int(t.nc.MaxPayload()); mp > 0 && mp-streamHeaderLen < n {
		n = max(mp-streamHeaderLen, 1)
	}
	return n
}

// register gives c a fresh id and files it.
func (t *Transport) register(remote netip.AddrPort) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextID++
	c := newConn(t, t.nextID, remote)
	t.conns[c.id] = c
	return c
}

func (t *Transport) forget(id uint64) {
	t.mu.Lock()
	delete(t.conns, id)
	t.mu.Unlock()
}

func (t *Transport) lookup(id uint64) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[id]
}

// Dial opens a stream to the node with address to: an open request to its
// inbox, answered by accept. It fails at once with ErrRefused when nobody
// listens there, and when NATS is unreachable.
func (t *Transport) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	if t.closing.Load() {
		return nil, net.ErrClosed
	}
	if !t.nc.IsConnected() {
		return nil, fmt.Errorf("dial %s: %w: not connected to NATS", to, ErrBroken)
	}
	c := t.register(to)
	reply, err := t.nc.RequestWithContext(ctx, c.subject, t.streamMsg(kindOpen, 0, c.id, c.window, nil))
	if err != nil {
		t.forget(c.id)
		if errors.Is(err, nats.ErrNoResponders) {
			err = ErrRefused
		}
		return nil, fmt.Errorf("dial %s: %w", to, err)
	}
	h, _, err := parseHeader(reply.Data)
	switch {
	case err == nil && h.kind == kindAccept && h.dst == c.id && h.src != 0 && h.value > 0 && h.from == to:
		c.accepted(h.src, h.value)
		t.stats.StreamsDialed.Add(1)
		return c, nil
	case err == nil && h.kind == kindReset:
		err = ErrRefused
	case err == nil:
		err = fmt.Errorf("%w: answer of kind %d to an open", errFormat, h.kind)
	}
	t.forget(c.id)
	return nil, fmt.Errorf("dial %s: %w", to, err)
}

// dispatch handles every message received (on nats.go's goroutine for the
// subscription, one message at a time per subject). It never blocks: what
// cannot be queued is dropped and counted.
func (t *Transport) dispatch(m *nats.Msg) {
	t.recvMu.RLock()
	defer t.recvMu.RUnlock()
	if t.closed {
		return
	}
	h, p, err := parseHeader(m.Data)
	if err != nil {
		t.stats.malformed.Add(1)
		t.log.Trace("dropping a message", "subject", m.Subject, "error", err)
		return
	}
	switch h.kind {
	case kindDatagram:
		t.receive(h.from, p)
	case kindOpen:
		t.accept(m, h)
	case kindData, kindFin, kindAck, kindReset:
		t.streamMessage(h, p)
	case kindPing:
		t.answerPing(m, h)
	default: // accept comes only as a reply
		t.stats.malformed.Add(1)
	}
}

func (t *Transport) receive(from netip.AddrPort, b []byte) {
	t.stats.Received.Add(1)
	t.stats.BytesReceived.Add(uint64(len(b)))
	switch {
	case from == t.addr:
		t.stats.DroppedSelf.Add(1)
		return
	case len(b) > t.cfg.MaxDatagram:
		t.stats.DroppedTooBig.Add(1)
		return
	}
	select {
	case t.packets <- transport.Packet{From: from, Buf: b}: // nats.go gave m.Data to us alone
	default:
		t.stats.DroppedQueue.Add(1)
	}
}

// accept answers an open: a new stream for Streams, or a reset when the
// queue is full.
func (t *Transport) accept(m *nats.Msg, h header) {
	if m.Reply == "" || h.src == 0 || h.value < 2*maxChunk || h.from == t.addr {
		t.stats.malformed.Add(1)
		return
	}
	c := t.register(h.from)
	c.accepted(h.src, h.value)
	select {
	case t.streams <- c:
		t.stats.StreamsAccepted.Add(1)
		t.enqueue(m.Reply, t.streamMsg(kindAccept, h.src, c.id, c.window, nil))
	default:
		t.forget(c.id)
		t.stats.StreamsRefused.Add(1)
		t.enqueue(m.Reply, t.streamMsg(kindReset, h.src, 0, 0, nil))
	}
}

// streamMessage routes a message to its stream; data and fin for a stream
// we do not know (closed, or never opened) are answered with a reset.
func (t *Transport) streamMessage(h header, p []byte) {
	c := t.lookup(h.dst)
	if c == nil || c.remote != h.from {
		if h.kind == kindData || h.kind == kindFin {
			t.enqueue(t.inboxOf(h.from), t.streamMsg(kindReset, h.src, h.dst, 0, nil))
		}
		return
	}
	switch h.kind {
	case kindData:
		c.onData(h, p)
	case kindFin:
		c.onFin(h)
	case kindAck:
		c.onAck(h)
	case kindReset:
		c.fail(ErrReset, false)
	}
}

// Close breaks the open streams, sends what is queued (the node's BYE),
// closes the connection and then both channels; streams still queued are
// closed. Safe to call twice and concurrently.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		close(t.stop)
		for _, c := range t.openConns() {
			c.fail(net.ErrClosed, true) // the resets go out with the rest below
		}
		t.outMu.Lock()
		t.outShut = true
		close(t.out)
		t.outMu.Unlock()
		<-t.sendDone
		if t.nc.IsConnected() {
			t.nc.FlushTimeout(closeFlush)
		}
		t.nc.Close()
		t.recvMu.Lock()
		t.closed = true
		close(t.packets)
		close(t.streams)
		t.recvMu.Unlock()
		for c := range t.streams {
			c.Close()
		}
		t.log.Debug("transport closed", "addr", t.addr)
	})
	return t.closeErr
}
