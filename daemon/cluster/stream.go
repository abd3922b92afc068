package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
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
	for raw := range n.tr.Streams() {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			c, peer, err := n.acceptStream(raw)
			if err != nil {
				raw.Close()
				n.drop(wire.Reason(err), err)
				return
			}
			defer c.Close()
			n.serveStream(ctx, c, peer)
		}()
	}
}

// acceptStream runs the server side of the stream handshake when the
// cluster has a key, and returns the peer it authenticated (zero without a
// key: frames then name their sender themselves).
func (n *Node) acceptStream(raw net.Conn) (net.Conn, store.NodeID, error) {
	if n.cfg.Keyring == nil {
		return raw, store.NodeID{}, nil
	}
	c, peer, err := seal.Server(raw, n.cfg.Keyring, n.id, n.cfg.Cluster)
	if err != nil {
		return nil, store.NodeID{}, err
	}
	return c, peer, nil
}

// dialStream opens a stream to addr and, with a key, runs the client side
// of the handshake (peer zero: any member of the cluster).
func (n *Node) dialStream(ctx context.Context, addr netip.AddrPort, peer store.NodeID) (net.Conn, error) {
	raw, err := n.tr.Dial(ctx, addr)
	if err != nil || n.cfg.Keyring == nil {
		return raw, err
	}
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	c, err := seal.Client(raw, n.cfg.Keyring, n.id, peer, n.cfg.Cluster)
	if err != nil {
		raw.Close()
		n.drop(wire.Reason(err), err)
		return nil, err
	}
	return c, nil
}

// readStreamFrame reads and decodes one frame of a stream. On a sealed
// stream the frame must name the peer the handshake authenticated.
func (n *Node) readStreamFrame(c net.Conn, peer store.NodeID) (wire.Header, wire.Message, error) {
	c.SetReadDeadline(time.Now().Add(streamIdle))
	b, err := wire.ReadFrame(c, maxFrame)
	if err != nil {
		return wire.Header{}, nil, err
	}
	hdr, msg, err := wire.Decode(b, n.plain)
	if err != nil {
		n.drop(wire.Reason(err), err)
		return hdr, nil, err
	}
	if !peer.IsZero() && hdr.Sender != peer {
		n.drop("unexpected", nil)
		return hdr, nil, fmt.Errorf("%w: a frame naming %s on a stream from %s", errUnexpected, hdr.Sender, peer)
	}
	return hdr, msg, nil
}

// serveStream answers requests on one stream until the peer closes it.
func (n *Node) serveStream(ctx context.Context, c net.Conn, peer store.NodeID) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		hdr, msg, err := n.readStreamFrame(c, peer)
		if err != nil {
			return
		}
		n.members.heard(hdr.Sender, time.Now())
		if _, ok := msg.(*wire.Fetch); ok && n.sync.isQuarantined(hdr.Sender) {
			n.drop("quarantined", nil)
			return
		}
		var reply wire.Message
		switch m := msg.(type) {
		case *wire.Fetch:
			rec, found, err := n.st.Peek(m.Key)
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
		out, err := n.encodeStream(reply)
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
	c, err := n.dialStream(ctx, holder, store.NodeID{})
	if err != nil {
		n.stats.fetchErrors.Add(1)
		n.log.Debug("fetch: dial", "holder", holder, "error", err)
		return store.Record{}, false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req, err := n.encodeStream(&wire.Fetch{Key: key})
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
	_, msg, err := wire.Decode(b, n.plain)
	reply, ok := msg.(*wire.FetchReply)
	if err != nil || !ok || !reply.Found || reply.Record == nil || reply.Record.Key != key {
		n.stats.fetchErrors.Add(1)
		return store.Record{}, false
	}
	return *reply.Record, true
}
