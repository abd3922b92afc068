package natstransport

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Addr is a node's synthetic address as a net.Addr (network "nats").
type Addr netip.AddrPort

func (a Addr) Network() string { return "nats" }
func (a Addr) String() string  { return netip.AddrPort(a).String() }

// conn is one side of a stream: a net.Conn over the two nodes' inboxes.
// The dispatcher (on*) and the owner (Read, Write, Close) meet under mu;
// readable and writable are one-slot wake-ups for the one Read and the one
// Write that may be waiting (rmu and wmu serialise them), who re-check the
// state after every wake, so a wake-up is never lost.
type conn struct {
	t       *Transport
	id      uint64 // ours
	remote  netip.AddrPort
	subject string // the peer's inbox
	window  uint64 // our receive window
	wbuf    []byte // Write's message buffer (Publish copies it)

	rmu, wmu           sync.Mutex
	rdl, wdl           deadline
	readable, writable chan struct{}

	heard   atomic.Int64 // unix ns of the last message from the peer (or of a probe answered)
	probing atomic.Bool  // a keepalive probe is in flight

	mu       sync.Mutex
	peerID   uint64 // 0 until the dialer reads the accept
	chunks   [][]byte
	buffered int
	recvd    uint64 // bytes received: the next data message's offset
	consumed uint64 // bytes read
	acked    uint64 // consumed, as last acknowledged
	finRecv  bool
	rerr     error // sticky read error; not set by a break after fin

	sent         uint64 // bytes sent
	peerConsumed uint64 // the peer's last acknowledgement
	peerWindow   uint64
	finSent      bool
	werr         error
	closed       bool
}

var _ net.Conn = (*conn)(nil)

func newConn(t *Transport, id uint64, remote netip.AddrPort) *conn {
	c := &conn{
		t: t, id: id, remote: remote, subject: t.inboxOf(remote), window: uint64(t.cfg.Window),
		rdl: makeDeadline(), wdl: makeDeadline(),
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
	}
	c.heard.Store(time.Now().UnixNano())
	return c
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read implements net.Conn: buffered data, then io.EOF after the peer's
// fin; ErrBroken or ErrReset when the stream failed.
func (c *conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, net.ErrClosed
		case c.rerr != nil:
			c.mu.Unlock()
			return 0, c.rerr
		case isClosed(c.rdl.wait()):
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		case c.buffered > 0 || len(b) == 0:
			n := c.take(b)
			ack, peer := c.consumed-c.acked >= c.window/4, c.peerID
			if ack {
				c.acked = c.consumed
			}
			at := c.acked
			c.mu.Unlock()
			if ack {
				c.t.publish(c.subject, c.t.streamMsg(kindAck, peer, c.id, at, nil))
			}
			return n, nil
		case c.finRecv:
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		select {
		case <-c.readable:
		case <-c.rdl.wait():
		}
	}
}

// take copies buffered data into b. c.mu is held.
func (c *conn) take(b []byte) int {
	n := 0
	for n < len(b) && len(c.chunks) > 0 {
		m := copy(b[n:], c.chunks[0])
		n += m
		if c.chunks[0] = c.chunks[0][m:]; len(c.chunks[0]) == 0 {
			c.chunks[0] = nil
			c.chunks = c.chunks[1:]
		}
	}
	c.buffered -= n
	c.consumed += uint64(n)
	return n
}

// Write implements net.Conn: b goes in data messages of at most the chunk
// size, each sent once the peer's window has room for it.
func (c *conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	total := 0
	for len(b) > 0 {
		n := min(len(b), c.t.chunkSize())
		off, peer, err := c.awaitCredit(n)
		if err != nil {
			return total, err
		}
		c.wbuf = appendHeader(c.wbuf[:0], header{kind: kindData, from: c.t.addr, dst: peer, src: c.id, value: off})
		c.wbuf = append(c.wbuf, b[:n]...)
		if err := c.t.nc.Publish(c.subject, c.wbuf); err != nil {
			err = fmt.Errorf("%w: publish: %v", ErrBroken, err)
			c.fail(err, true)
			return total, err
		}
		c.t.stats.streamBytesSent.Add(uint64(n))
		total += n
		b = b[n:]
	}
	return total, nil
}

// awaitCredit waits until the peer's window has room for n more bytes and
// reserves them, returning their offset.
func (c *conn) awaitCredit(n int) (offset, peer uint64, err error) {
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			err = net.ErrClosed
		case c.werr != nil:
			err = c.werr
		case c.finSent:
			err = fmt.Errorf("write after CloseWrite: %w", net.ErrClosed)
		case isClosed(c.wdl.wait()):
			err = os.ErrDeadlineExceeded
		case c.sent+uint64(n)-c.peerConsumed <= c.peerWindow:
			offset, peer = c.sent, c.peerID
			c.sent += uint64(n)
			c.mu.Unlock()
			if !c.t.nc.IsConnected() {
				err = fmt.Errorf("%w: not connected to NATS", ErrBroken)
				c.fail(err, true)
				return 0, 0, err
			}
			return offset, peer, nil
		}
		c.mu.Unlock()
		if err != nil {
			return 0, 0, err
		}
		select {
		case <-c.writable:
		case <-c.wdl.wait():
		}
	}
}

// CloseWrite sends fin after what was written: the peer reads it, then
// io.EOF. Reading goes on.
func (c *conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendFin()
}

// sendFin sends fin unless it was sent or the stream failed. c.wmu is held.
func (c *conn) sendFin() error {
	c.mu.Lock()
	if c.finSent || c.werr != nil {
		err := c.werr
		c.mu.Unlock()
		return err
	}
	c.finSent = true
	off, peer := c.sent, c.peerID
	c.mu.Unlock()
	c.t.publish(c.subject, c.t.streamMsg(kindFin, peer, c.id, off, nil))
	return nil
}

// Close ends the stream: fin after what was written, or a reset when a
// Write is in progress (Close must not wait for a peer that stopped
// reading). Blocked calls return net.ErrClosed. Safe to call twice.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	kick(c.readable)
	kick(c.writable)
	c.t.forget(c.id)
	if c.wmu.TryLock() {
		c.sendFin()
		c.wmu.Unlock()
	} else {
		c.reset()
	}
	c.rdl.set(time.Time{}) // stops the timers
	c.wdl.set(time.Time{})
	return nil
}

// reset tells the peer the stream is aborted, unless it already failed.
func (c *conn) reset() {
	c.mu.Lock()
	peer := c.peerID
	c.mu.Unlock()
	c.t.enqueue(c.subject, c.t.streamMsg(kindReset, peer, c.id, 0, nil))
}

// fail breaks the stream with err: both directions, except reading after
// a fin, which has all its data. With tell, the peer gets a reset.
func (c *conn) fail(err error, tell bool) {
	c.mu.Lock()
	if c.closed || (c.werr != nil && (c.rerr != nil || c.finRecv)) {
		c.mu.Unlock()
		return
	}
	if c.rerr == nil && !c.finRecv {
		c.rerr = err
	}
	if c.werr == nil {
		c.werr = err
	}
	peer := c.peerID
	c.mu.Unlock()
	kick(c.readable)
	kick(c.writable)
	c.t.log.Debug("stream broken", "peer", c.remote, "id", c.id, "error", err)
	if tell {
		c.t.enqueue(c.subject, c.t.streamMsg(kindReset, peer, c.id, 0, nil))
	}
}

// onData takes a data message from the dispatcher.
func (c *conn) onData(h header, p []byte) {
	c.heard.Store(time.Now().UnixNano())
	c.mu.Lock()
	if c.closed || c.rerr != nil || c.finRecv {
		c.mu.Unlock()
		return
	}
	var err error
	switch {
	case h.value != c.recvd:
		err = fmt.Errorf("%w: data at offset %d, expected %d: messages were lost", ErrBroken, h.value, c.recvd)
	case uint64(c.buffered)+uint64(len(p)) > c.window:
		err = fmt.Errorf("%w: the peer overran the window of %d bytes", ErrBroken, c.window)
	default:
		c.adopt(h.src)
		c.chunks = append(c.chunks, p)
		c.buffered += len(p)
		c.recvd += uint64(len(p))
	}
	c.mu.Unlock()
	if err != nil {
		c.fail(err, true)
		return
	}
	kick(c.readable)
}

// onFin takes the peer's fin.
func (c *conn) onFin(h header) {
	c.heard.Store(time.Now().UnixNano())
	c.mu.Lock()
	if c.closed || c.rerr != nil || c.finRecv {
		c.mu.Unlock()
		return
	}
	if h.value != c.recvd {
		c.mu.Unlock()
		c.fail(fmt.Errorf("%w: fin at offset %d, expected %d: messages were lost", ErrBroken, h.value, c.recvd), true)
		return
	}
	c.adopt(h.src)
	c.finRecv = true
	c.mu.Unlock()
	kick(c.readable)
}

// onAck takes the peer's acknowledgement.
func (c *conn) onAck(h header) {
	c.heard.Store(time.Now().UnixNano())
	c.mu.Lock()
	if h.value > c.sent {
		c.mu.Unlock()
		c.fail(fmt.Errorf("%w: the peer acknowledged %d bytes of %d sent", ErrBroken, h.value, c.sent), true)
		return
	}
	if h.value > c.peerConsumed {
		c.peerConsumed = h.value
	}
	c.mu.Unlock()
	kick(c.writable)
}

// accepted records the peer's id and window: the acceptor's, from its
// accept, on the dialer's side; the dialer's, from its open, on the
// acceptor's.
func (c *conn) accepted(peer, window uint64) {
	c.mu.Lock()
	c.peerID, c.peerWindow = peer, window
	c.mu.Unlock()
}

// adopt learns the peer's id from its first message, which may overtake
// the accept (they come through different subscriptions). c.mu is held.
func (c *conn) adopt(src uint64) {
	if c.peerID == 0 {
		c.peerID = src
	}
}

// failed reports whether the stream is closed or broken both ways.
func (c *conn) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.werr != nil
}

func (c *conn) LocalAddr() net.Addr  { return Addr(c.t.addr) }
func (c *conn) RemoteAddr() net.Addr { return Addr(c.remote) }

func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	kick(c.readable)
	return nil
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	kick(c.writable)
	return nil
}
