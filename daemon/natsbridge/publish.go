package natsbridge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/store"
)

// The publishing path, in three goroutines:
//
//	watcher:   store change log → change (reads the record) → out channel
//	publisher: out channel → nats.go (PublishMsg) → outbox
//	confirmer: PING/PONG (FlushTimeout) → confirms or resends outbox entries
//
// Writes never wait for any of it: the watcher reads the store's change log,
// which is the buffer between the two, and a slow or absent NATS only makes
// the watcher lag (past watch_history events it skips ahead and counts the
// gap as missed).
//
// Latest wins. For an event the watcher reads the key's current record; if
// the record has moved on past the event's version, the event is skipped —
// the later event publishes the newer record. So a burst of writes to one
// key may publish only the last, and a subscriber never sees an older value
// after a newer one from this node.

// change is one record to publish, built by the watcher.
type change struct {
	key, subject string
	op           store.Op
	version      uint64
	origin       string
	msgID        string
	value        []byte
}

// maxSubjectLen keeps HPUB's control line within nats-server's default
// max_control_line (4096); a longer one would make the server drop the
// connection. Keys (≤ 1024 bytes, ≤ 3 subject bytes each) and prefixes
// (≤ 256) stay below it.
const maxSubjectLen = 4000

// errCaughtUp ends the watch once it has reached the index of the stop.
var errCaughtUp = errors.New("caught up")

// publishing is the running publishing path.
type publishing struct {
	b          *Bridge
	nc         *nats.Conn
	watchStop  context.CancelFunc
	watchDone  chan struct{}
	pubDone    chan struct{}
	confirmCtx context.Context
	confirmEnd context.CancelFunc
	confDone   chan struct{}
	out        chan *change
}

func (b *Bridge) startPublishing(nc *nats.Conn) *publishing {
	p := &publishing{b: b, nc: nc, out: make(chan *change, 1024),
		watchDone: make(chan struct{}), pubDone: make(chan struct{}), confDone: make(chan struct{})}
	var wctx context.Context
	wctx, p.watchStop = context.WithCancel(context.Background())
	p.confirmCtx, p.confirmEnd = context.WithCancel(context.Background())
	go func() { defer close(p.watchDone); b.watch(wctx, b.cursor.Load(), p.out) }()
	go func() { defer close(p.pubDone); b.publishLoop(nc, p.out) }()
	go func() { defer close(p.confDone); b.confirmLoop(p.confirmCtx, nc) }()
	return p
}

// stop catches the watcher up with the changes committed so far, lets the
// publisher hand them over, and confirms what is in flight, each within
// DrainTimeout; what stays unconfirmed is counted as dropped.
func (p *publishing) stop() {
	b := p.b
	target := b.src.LastIndex()
	b.stopAt.Store(target)
	b.stopSet.Store(true)
	if b.cursor.Load() >= target {
		p.watchStop()
	}
	t := time.AfterFunc(b.cfg.DrainTimeout, p.watchStop)
	<-p.watchDone
	t.Stop()
	p.watchStop()
	<-p.pubDone
	p.confirmEnd()
	<-p.confDone
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	for b.out.len() > 0 && ctx.Err() == nil {
		if p.nc.Status() != nats.CONNECTED {
			b.sleep(ctx, 50*time.Millisecond)
			continue
		}
		left := time.Until(deadline(ctx))
		if err := b.confirm(p.nc, min(left, flushTimeout)); err != nil {
			b.sleep(ctx, 50*time.Millisecond)
		}
	}
	if n := b.out.len(); n > 0 {
		b.st.dropped.Add(uint64(n))
		b.st.droppedAtStop.Add(uint64(n))
		b.log.Warn("nats: messages unconfirmed at stop, counted as dropped", "messages", n)
	}
}

// watch reads the change log from index start and sends the changes to
// publish to out, until ctx ends, the stop index is reached or the store
// closes.
func (b *Bridge) watch(ctx context.Context, start uint64, out chan<- *change) {
	defer close(out)
	cursor := start
	for {
		err := b.src.Watch(ctx, "", cursor, false, func(ev store.Event) error {
			if c := b.changeFor(ev); c != nil {
				select {
				case out <- c:
				case <-ctx.Done(): // stopped before catching up
					b.st.dropped.Add(1)
					b.st.droppedAtStop.Add(1)
					return ctx.Err()
				}
			}
			cursor = ev.Index
			b.cursor.Store(cursor)
			if b.stopSet.Load() && cursor >= b.stopAt.Load() {
				return errCaughtUp
			}
			return nil
		})
		switch {
		case ctx.Err() != nil, errors.Is(err, errCaughtUp):
			return
		case errors.Is(err, store.ErrClosed):
			b.log.Debug("nats: the store closed; publishing ends")
			return
		case errors.Is(err, store.ErrCompacted):
			last := b.src.LastIndex()
			b.st.missed.Add(last - cursor)
			b.log.Warn("nats: the publisher fell behind the change log; changes skipped", "from", cursor+1, "to", last)
			cursor = last
			b.cursor.Store(cursor)
		default:
			b.st.errors.Add(1)
			b.log.Error("nats: watching the change log failed; retrying", "error", err)
			b.sleep(ctx, time.Second)
		}
	}
}

// changeFor returns the change to publish for ev, or nil: an event the
// publish mode leaves out, or one whose record has moved on (latest wins).
func (b *Bridge) changeFor(ev store.Event) *change {
	if b.cfg.Publish == PublishLocal && ev.Origin != b.self {
		return nil
	}
	b.st.changes.Add(1)
	if ev.Op == store.OpExpire {
		// The record is unchanged, and hidden: the event is the news.
		return &change{
			key: ev.Key, subject: b.kv + SubjectKey(ev.Key), op: store.OpExpire,
			version: ev.Version, origin: ev.Origin.String(),
			msgID: ev.Key + "@" + strconv.FormatUint(ev.Version, 10) + "@expire",
		}
	}
	rec, found, err := b.src.Get(ev.Key)
	if err != nil {
		b.st.errors.Add(1)
		b.st.dropped.Add(1)
		b.log.Error("nats: reading a changed record failed; not published", "key", ev.Key, "error", err)
		return nil
	}
	if !found || rec.Lamport != ev.Version {
		b.st.skipped.Add(1)
		return nil
	}
	h := rec.Hash()
	c := &change{
		key:     rec.Key,
		subject: b.kv + SubjectKey(rec.Key),
		op:      store.OpSet,
		version: rec.Lamport,
		origin:  rec.Origin.String(),
		value:   rec.Value,
	}
	if rec.Deleted {
		c.op, c.value = store.OpDel, nil
	}
	c.msgID = c.key + "@" + strconv.FormatUint(c.version, 10) + "@" + hex.EncodeToString(h[:4])
	return c
}

// publishLoop hands each change to nats.go.
func (b *Bridge) publishLoop(nc *nats.Conn, out <-chan *change) {
	for c := range out {
		b.out.mu.Lock()
		b.send(nc, &entry{change: c})
		b.out.mu.Unlock()
		b.poke()
	}
}

// message builds the NATS message for c. Above the server's max payload it
// carries the headers only, with Ck-Truncated: true.
func (b *Bridge) message(c *change, maxPayload int64) (*nats.Msg, bool, error) {
	if len(c.subject) > maxSubjectLen {
		return nil, false, fmt.Errorf("subject of %d bytes is over %d", len(c.subject), maxSubjectLen)
	}
	if maxPayload <= 0 { // not connected yet
		maxPayload = assumedMaxPayload
	}
	h := nats.Header{
		"Ck-Key":      {c.key},
		"Ck-Op":       {string(c.op)},
		"Ck-Version":  {strconv.FormatUint(c.version, 10)},
		"Ck-Origin":   {c.origin},
		"Nats-Msg-Id": {c.msgID},
	}
	m := &nats.Msg{Subject: c.subject, Header: h, Data: c.value}
	if int64(headerSize(h)+len(c.value)) <= maxPayload {
		return m, false, nil
	}
	h["Ck-Truncated"] = []string{"true"}
	m.Data = nil
	if int64(headerSize(h)) > maxPayload {
		return nil, false, fmt.Errorf("%w: even the headers (%d bytes) are over the server's max payload (%d)",
			nats.ErrMaxPayload, headerSize(h), maxPayload)
	}
	return m, true, nil
}

// headerSize is the encoded size of h, as nats.go writes it.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(textproto.TrimString(v)) + 4
		}
	}
	return n
}
