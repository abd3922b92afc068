package natsbridge

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/rpc"
)

// Inbound writes (docs/PROTOCOL.md, NATS bridge). With Subscribe, the bridge queue-subscribes to
// <prefix>.set.> and <prefix>.del.> — never to kv subjects, so its own
// publications cannot come back as writes — in the queue group, so that one
// node of the cluster applies each message. A message becomes a call of the
// daemon's write path (Writer), on_set included; its change is then
// published like any other. A message with a reply subject is answered with
// the API's JSON: the stored record, or {"error","code"}.
//
// Writes run on Workers goroutines, sharded by key, so writes to one key
// that reach this node are applied in the order they arrived while others
// proceed in parallel (and share the store's group commit). Across nodes of
// the queue group, and between a set and a del subject, there is no order:
// a client that needs one waits for each reply.

// inbound is the running subscription side.
type inbound struct {
	subs    []*nats.Subscription
	shards  []chan inMsg
	wg      sync.WaitGroup
	stopped bool // guarded by Bridge.inMu
	ctx     context.Context
	cancel  context.CancelFunc
}

type inMsg struct {
	m   *nats.Msg
	key string
	del bool
}

func (b *Bridge) subscribe(nc *nats.Conn) error {
	in := &inbound{}
	// Writes get their own context: at stop, the queued ones finish
	// before it is cancelled.
	in.ctx, in.cancel = context.WithCancel(context.Background())
	for range b.cfg.Workers {
		ch := make(chan inMsg, 64)
		in.shards = append(in.shards, ch)
		in.wg.Add(1)
		go func() { defer in.wg.Done(); b.applyLoop(in.ctx, ch) }()
	}
	b.inMu.Lock()
	b.in = in
	b.inMu.Unlock()
	for _, op := range []string{"set", "del"} {
		subj := b.cfg.Prefix + "." + op + ".>"
		sub, err := nc.QueueSubscribe(subj, b.cfg.QueueGroup, b.enqueue)
		if err != nil {
			b.unsubscribe()
			return err
		}
		in.subs = append(in.subs, sub)
	}
	return nil
}

// enqueue runs on nats.go's delivery goroutine of a subscription: it maps
// the subject to a key and queues the write on the key's shard.
func (b *Bridge) enqueue(m *nats.Msg) {
	b.st.received.Add(1)
	key, del, err := b.keyOf(m.Subject)
	if err != nil {
		b.answer(m, rpc.Record{}, rpc.Errorf(rpc.ErrBadRequest, "%v", err))
		return
	}
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	in := b.in
	if in == nil || in.stopped {
		b.answer(m, rpc.Record{}, rpc.ErrShuttingDown)
		return
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	in.shards[h.Sum32()%uint32(len(in.shards))] <- inMsg{m: m, key: key, del: del}
}

// keyOf maps an inbound subject back to its key and op.
func (b *Bridge) keyOf(subject string) (key string, del bool, err error) {
	rest, ok := strings.CutPrefix(subject, b.cfg.Prefix+".set.")
	if !ok {
		if rest, ok = strings.CutPrefix(subject, b.cfg.Prefix+".del."); !ok {
			return "", false, ErrBadSubject
		}
		del = true
	}
	key, err = KeyFromSubject(rest)
	return key, del, err
}

func (b *Bridge) applyLoop(ctx context.Context, ch <-chan inMsg) {
	for in := range ch {
		var rec rpc.Record
		var err error
		if in.del {
			rec, err = b.w.Delete(ctx, in.key, rpc.WriteOptions{})
		} else {
			rec, err = b.w.Put(ctx, in.key, in.m.Data, rpc.WriteOptions{})
		}
		b.answer(in.m, rec, err)
	}
}

// answer counts the outcome of an inbound write and, when the message
// asks for a reply, sends the API's JSON answer.
func (b *Bridge) answer(m *nats.Msg, rec rpc.Record, err error) {
	var body []byte
	if err != nil {
		b.st.writeErrors.Add(1)
		e := rpc.AsError(err)
		body, _ = json.Marshal(e)
		b.log.Debug("nats: inbound write refused", "subject", m.Subject, "code", e.Code, "error", e.Message)
	} else {
		b.st.writes.Add(1)
		if body, err = json.Marshal(rec); err != nil {
			body, _ = json.Marshal(rpc.Errorf(rpc.ErrInternal, "%v", err))
		}
	}
	if m.Reply == "" {
		return
	}
	if err := m.Respond(body); err != nil {
		b.st.errors.Add(1)
		b.log.Debug("nats: reply failed", "subject", m.Subject, "error", err)
	}
}

// unsubscribe drains the subscriptions (messages already delivered are
// still applied and answered), then lets the workers finish their queues;
// each step is bounded by DrainTimeout, after which queued writes see their
// context cancelled.
func (b *Bridge) unsubscribe() {
	b.inMu.RLock()
	in := b.in
	b.inMu.RUnlock()
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	for _, s := range in.subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if err := s.Drain(); err != nil {
			s.Unsubscribe()
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
			s.Unsubscribe()
		}
	}
	b.inMu.Lock()
	in.stopped = true
	for _, ch := range in.shards {
		close(ch)
	}
	b.inMu.Unlock()
	done := make(chan struct{})
	go func() { in.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.cfg.DrainTimeout):
		in.cancel()
		<-done
	}
	in.cancel()
}
