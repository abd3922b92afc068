package natstransport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// A stream over TCP learns at once that its peer's process died: the
// kernel closes the socket. Over NATS nobody tells: the peer's inbox just
// goes quiet, and a Read would wait for its deadline (the cluster's is 30
// s, long enough to stall anti-entropy, which runs one session at a time).
// So a stream that has heard nothing from its peer for KeepAlive sends a
// ping as a NATS request: a live peer answers (ping, or reset for a stream
// it no longer knows); a dead one's inbox has no subscriber, and NATS
// answers "no responders" at once — the stream is then reset. A probe that
// times out proves nothing (a slow server) and is simply repeated.

// keepAlive probes quiet streams until the transport closes.
func (t *Transport) keepAlive() {
	tick := time.NewTicker(t.cfg.KeepAlive / 2)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			for _, c := range t.openConns() {
				if now.UnixNano()-c.heard.Load() >= int64(t.cfg.KeepAlive) && !c.failed() && c.probing.CompareAndSwap(false, true) {
					go t.probe(c)
				}
			}
		}
	}
}

// probe sends one ping for c and acts on the answer.
func (t *Transport) probe(c *conn) {
	defer c.probing.Store(false)
	if !t.nc.IsConnected() {
		return // the disconnect breaks the streams
	}
	c.mu.Lock()
	peer := c.peerID
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.KeepAlive)
	defer cancel()
	reply, err := t.nc.RequestWithContext(ctx, c.subject, t.streamMsg(kindPing, peer, c.id, 0, nil))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		c.fail(fmt.Errorf("%w: the peer is gone (nothing listens on its inbox)", ErrReset), false)
		return
	case err != nil:
		return
	}
	if h, _, err := parseHeader(reply.Data); err == nil && h.kind == kindReset {
		c.fail(ErrReset, false)
		return
	}
	c.heard.Store(time.Now().UnixNano())
}

// answerPing answers a peer's probe: ping while we know the stream, else
// reset.
func (t *Transport) answerPing(m *nats.Msg, h header) {
	if m.Reply == "" {
		t.stats.malformed.Add(1)
		return
	}
	kind := kindPing
	if c := t.lookup(h.dst); c == nil || c.remote != h.from || c.failed() {
		kind = kindReset
	}
	t.enqueue(m.Reply, t.streamMsg(kind, h.src, h.dst, 0, nil))
}

// openConns returns the streams open now.
func (t *Transport) openConns() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	return conns
}
