package cluster

import (
	"net/netip"
	"sync"

	"github.com/cloudknowledge/ck/daemon/wire"
)

// ackMaxBatch bounds the writes one ACK datagram acknowledges before its
// size is checked against max_datagram.
const ackMaxBatch = 64

// acker sends the ACKs this node owes, coalescing those owed to one
// writer at the same moment into one datagram (wire.Ack.More): the
// UPDATEs one group commit made durable are owed at once, by the
// committing goroutine (updatesApplied), and their writer takes one
// datagram, not one per write. ACKs go at once, on the goroutine that
// owes them; ACKs owed while that goroutine sends (an ANNOUNCE's, say) are
// queued and sent by it in the next round, one datagram per writer.
type acker struct {
	mu      sync.Mutex
	pending map[netip.AddrPort][]wire.AckEntry
	sending bool
}

// send owes to the ACKs of es. It returns once they are sent, or queued
// for the goroutine that sends now. With nobody sending (the usual case:
// one committing goroutine owes them) es goes out as it is, without the
// queue's map.
func (a *acker) send(n *Node, to netip.AddrPort, es ...wire.AckEntry) {
	a.mu.Lock()
	if a.sending {
		if a.pending == nil {
			a.pending = map[netip.AddrPort][]wire.AckEntry{}
		}
		a.pending[to] = append(a.pending[to], es...)
		a.mu.Unlock()
		return
	}
	a.sending = true // pending is empty: whoever sent last drained it
	a.mu.Unlock()
	n.sendAcks(to, es)
	a.mu.Lock()
	for len(a.pending) > 0 {
		batch := a.pending
		a.pending = nil
		a.mu.Unlock()
		for to, es := range batch {
			n.sendAcks(to, es)
		}
		a.mu.Lock()
	}
	a.sending = false
	a.mu.Unlock()
}

// sendAcks sends ACKs for es to one writer, as few datagrams as fit
// max_datagram.
func (n *Node) sendAcks(to netip.AddrPort, es []wire.AckEntry) {
	for len(es) > 0 {
		k := min(len(es), ackMaxBatch)
		for {
			msg := ackOf(n, es[:k])
			b, err := n.encode(msg)
			if err != nil {
				n.log.Error("encode", "type", msg.Type(), "error", err)
				return
			}
			if len(b) <= n.cfg.MaxDatagram || k == 1 {
				n.send(to, b)
				break
			}
			k /= 2
		}
		es = es[k:]
	}
}

// ackOf is the ACK of es: the first write in the fields every version
// reads, the others in More.
func ackOf(n *Node, es []wire.AckEntry) *wire.Ack {
	m := &wire.Ack{Key: es[0].Key, Origin: es[0].Origin, Lamport: es[0].Lamport, From: n.id}
	if len(es) > 1 {
		m.More = es[1:]
	}
	return m
}
