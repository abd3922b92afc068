package natsbridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The outbox: confirming what was published (see publish.go for the path).
//
// nats.go returning from Publish means only that the message
// is in its buffer. When a connection breaks, what was in that buffer or in
// the socket is lost without a word, while what is published during the
// outage waits in nats.go's reconnect buffer (up to BufferBytes; beyond, it
// refuses: those are the drops) and is sent on reconnect. To count exactly,
// each message stays in the outbox until a PING sent after it is answered on
// the same connection — the server has then processed it — and a message
// whose connection broke before that is resent. "Same connection" is told by
// a cut count, read before each publish: nats.go's reconnect count, plus one
// while not connected. A PONG that arrives when the reconnect count equals a
// message's cut count proves no break came between the message and the PING;
// a smaller cut count means a break did, and the message is resent (unless a
// later message for the same key is in flight: it supersedes it). A write
// that fails, inside Publish or in nats.go's background flusher, discards
// nats.go's buffer too: it forces a reconnect, so it counts as a cut. A
// message
// is thus delivered at least once; duplicates, only around reconnects, carry
// the same Nats-Msg-Id, which JetStream de-duplicates. So, once in-flight
// messages settle:
//
//	changes = published + dropped + skipped + superseded
//
// and the server has seen each published change at least once and each
// dropped one never (except those given up at stop, which may have arrived).
//
// Before the first connection nats.go cannot take messages with headers (it
// has not seen the server's INFO), so the outbox holds them itself, within
// BufferBytes, and hands them over in order once connected.

// entry is a change handed to nats.go and not yet confirmed.
type entry struct {
	*change
	seq       uint64 // order in which entries were handed over
	cut       uint64 // the cut count before the hand-over
	truncated bool   // counted once, however often it is resent
	held      bool   // not handed over yet: no connection so far
	size      int    // bytes a held entry counts against BufferBytes
}

// outbox holds the entries in flight, in seq order. mu also makes each
// publish and its entry one step, so a PING queued after reading seq
// follows every entry up to seq on the wire.
type outbox struct {
	mu        sync.Mutex
	seq       uint64
	entries   []*entry
	held      int // entries held until the first connection
	heldBytes int
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// send publishes e (new or resent) and appends it to the outbox, or counts
// it as dropped. Until the first connection, when nats.go cannot take
// messages with headers yet (it has not seen the server's INFO), entries
// are held in the outbox instead, within BufferBytes, and handed over in
// order once connected. The caller holds b.out.mu.
func (b *Bridge) send(nc *nats.Conn, e *entry) {
	if !b.ready(nc) {
		b.hold(e)
		return
	}
	if b.out.held > 0 {
		b.release(nc)
	}
	e.cut = cutCount(nc)
	msg, truncated, err := b.message(e.change, nc.MaxPayload())
	if err == nil {
		err = nc.PublishMsg(msg)
		if errors.Is(err, nats.ErrMaxPayload) { // the server changed under us
			if msg, truncated, err = b.message(e.change, nc.MaxPayload()); err == nil {
				err = nc.PublishMsg(msg)
			}
		}
	}
	if err != nil && refused(err) {
		b.dropped(e, err)
		return
	}
	if err != nil {
		// A write to the socket failed inside Publish: nats.go discarded
		// its buffer, this message with it, but may keep the connection.
		// Force a reconnect, so that the cut count moves on and this
		// message, like the others in that buffer, is resent.
		b.st.errors.Add(1)
		b.log.Warn("nats: write failed; reconnecting", "error", err)
		nc.ForceReconnect()
	}
	if truncated && !e.truncated {
		e.truncated = true
		b.st.truncated.Add(1)
	}
	b.out.seq++
	e.seq = b.out.seq
	b.out.entries = append(b.out.entries, e)
}

// refused reports whether a Publish error means nats.go refused the message
// without writing anything (else it is a failed write to the socket).
func refused(err error) bool {
	for _, e := range []error{nats.ErrReconnectBufExceeded, nats.ErrConnectionClosed, nats.ErrConnectionDraining,
		nats.ErrBadSubject, nats.ErrHeadersNotSupported, nats.ErrMaxPayload, nats.ErrInvalidConnection,
		nats.ErrBadHeaderMsg, nats.ErrInvalidMsg} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ready reports whether nats.go has been connected once, and so knows the
// server (headers, max payload).
func (b *Bridge) ready(nc *nats.Conn) bool {
	if b.everConnected.Load() {
		return true
	}
	if nc.Status() == nats.CONNECTED {
		b.everConnected.Store(true)
		return true
	}
	return false
}

// hold keeps e in the outbox until the first connection.
func (b *Bridge) hold(e *entry) {
	size := len(e.subject) + len(e.key) + len(e.msgID) + len(e.value) + 200 // headers and protocol, roughly
	if b.out.heldBytes+size > b.cfg.BufferBytes {
		b.dropped(e, nats.ErrReconnectBufExceeded)
		return
	}
	e.held, e.size = true, size
	b.out.held++
	b.out.heldBytes += size
	b.out.entries = append(b.out.entries, e)
}

// release hands the held entries over, in order. Before the first
// connection every entry is held, so they are the whole outbox.
func (b *Bridge) release(nc *nats.Conn) {
	held := b.out.entries
	b.out.entries, b.out.held, b.out.heldBytes = nil, 0, 0
	for _, e := range held {
		e.held = false
		b.send(nc, e)
	}
}

func (b *Bridge) dropped(e *entry, err error) {
	n := b.st.dropped.Add(1)
	if errors.Is(err, nats.ErrReconnectBufExceeded) {
		b.st.droppedBuffer.Add(1)
	}
	// One line for the first drop and then one per 1000: an outage can
	// drop millions.
	if n == 1 || n%1000 == 0 {
		b.log.Warn("nats: change not published", "key", e.key, "version", e.version, "error", err, "dropped_total", n)
	}
}

// cutCount is how many times the byte stream to NATS has been cut, as far
// as can be told before a publish: reconnects so far, plus one while not
// connected (what is written now goes to the reconnect buffer, which the
// next connection sends first). Read the count before the status: it may
// then only over-count, which costs a resend, never a false confirmation.
func cutCount(nc *nats.Conn) uint64 {
	n := nc.Stats().Reconnects
	if nc.Status() != nats.CONNECTED {
		n++
	}
	return n
}

// confirmEvery spaces confirmation rounds under load: a PING per round
// trip would cost the server and this node more than the messages. Messages
// flow meanwhile; only their confirmation waits.
const confirmEvery = 10 * time.Millisecond

// confirmLoop confirms the outbox while connected, until ctx ends.
func (b *Bridge) confirmLoop(ctx context.Context, nc *nats.Conn) {
	for ctx.Err() == nil {
		if b.out.len() == 0 || nc.Status() != nats.CONNECTED {
			b.sleep(ctx, 250*time.Millisecond)
			continue
		}
		start := time.Now()
		if err := b.confirm(nc, flushTimeout); err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		pause(ctx, confirmEvery-time.Since(start))
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// pause waits for d or the end of ctx.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// confirm sends a PING and, once its PONG is in, settles every entry handed
// over before it: confirmed (published) if no cut came between, else
// superseded by a later entry for the key, else resent.
func (b *Bridge) confirm(nc *nats.Conn, timeout time.Duration) error {
	b.out.mu.Lock()
	if b.out.held > 0 && b.ready(nc) {
		b.release(nc)
	}
	upto := b.out.seq
	b.out.mu.Unlock()
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	if err := nc.FlushTimeout(timeout); err != nil {
		return err
	}
	cuts := nc.Stats().Reconnects
	b.out.mu.Lock()
	defer b.out.mu.Unlock()
	latest := make(map[string]uint64, len(b.out.entries))
	for _, e := range b.out.entries {
		latest[e.key] = e.seq
	}
	var keep, resend []*entry
	for _, e := range b.out.entries {
		switch {
		case e.held || e.seq > upto || e.cut > cuts:
			keep = append(keep, e)
		case e.cut == cuts:
			b.st.published.Add(1)
		case latest[e.key] > e.seq:
			b.st.superseded.Add(1)
		default:
			resend = append(resend, e)
		}
	}
	b.out.entries = keep
	for _, e := range resend {
		b.st.republished.Add(1)
		b.send(nc, e)
	}
	return nil
}
