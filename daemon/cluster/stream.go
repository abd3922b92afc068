package cluster

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// maxFrame bounds one stream frame: a whole record at the largest value
// size, plus room for its envelope.
const maxFrame = 64<<20 + 1<<20

// streamIdle is how long a stream may sit without a request.
const streamIdle = 30 * time.Second

// acceptStreams serves streams peers open to this node until the
// transport closes.
func (n *Node) acceptStreams(ctx context.Context) {
	for c := range n.tr.Streams() {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer c.Close()
			n.serveStream(ctx, c)
		}()
	}
}

// serveStream answers requests on one stream until the peer closes it.
func (n *Node) serveStream(ctx context.Context, c net.Conn) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		c.SetReadDeadline(time.Now().Add(streamIdle))
		b, err := wire.ReadFrame(c, maxFrame)
		if err != nil {
			return
		}
		hdr, msg, err := wire.Decode(b, n.sealer)
		if err != nil {
			n.drop(wire.Reason(err), err)
			return
		}
		n.members.heard(hdr.Sender, time.Now())
		var reply wire.Message
		switch m := msg.(type) {
		case *wire.Fetch:
			rec, found, err := n.st.Get(m.Key)
			if err != nil {
				return
			}
			fr := &wire.FetchReply{Found: found}
			if found {
				fr.Record = &rec
			}
			reply = fr
		case *wire.SyncTop:
			// A sync session takes the rest of the stream.
			n.serveSync(ctx, c, hdr.Sender, m)
			return
		default:
			n.drop("unexpected", nil)
			return
		}
		out, err := n.encode(reply)
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(streamIdle))
		if err := wire.WriteFrame(c, out); err != nil {
			return
		}
	}
}

// fetch asks the holder of a record for its current version of key.
func (n *Node) fetch(ctx context.Context, holder netip.AddrPort, key string) (store.Record, bool) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	c, err := n.tr.Dial(ctx, holder)
	if err != nil {
		n.stats.fetchErrors.Add(1)
		n.log.Debug("fetch: dial", "holder", holder, "error", err)
		return store.Record{}, false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req, err := n.encode(&wire.Fetch{Key: key})
	if err == nil {
		err = wire.WriteFrame(c, req)
	}
	var b []byte
	if err == nil {
		b, err = wire.ReadFrame(c, maxFrame)
	}
	if err != nil {
		n.stats.fetchErrors.Add(1)
		n.log.Debug("fetch", "holder", holder, "key", key, "error", err)
		return store.Record{}, false
	}
	_, msg, err := wire.Decode(b, n.sealer)
	reply, ok := msg.(*wire.FetchReply)
	if err != nil || !ok || !reply.Found || reply.Record == nil || reply.Record.Key != key {
		n.stats.fetchErrors.Add(1)
		return store.Record{}, false
	}
	return *reply.Record, true
}
