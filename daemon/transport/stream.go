package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Dial opens a TCP stream to a node's unicast address, from this node's
// bound address.
func (u *UDP) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	if u.closing.Load() {
		return nil, net.ErrClosed
	}
	d := net.Dialer{KeepAlive: keepAlive}
	if a := u.local.Addr(); !a.IsUnspecified() {
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	c, err := d.DialContext(ctx, u.tcp, to.String())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", to, err)
	}
	c.(*net.TCPConn).SetNoDelay(true) // the default; frames are written whole
	u.stats.StreamsDialed.Add(1)
	return c, nil
}

// Streams implements Transport. When the channel is full, new streams are
// closed at once and counted (Stats.StreamsRefused).
func (u *UDP) Streams() <-chan net.Conn { return u.streams }

func (u *UDP) acceptLoop() {
	defer u.wg.Done()
	for {
		c, err := u.ln.AcceptTCP()
		if err != nil {
			if u.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Warn("accept", "error", err)
			time.Sleep(50 * time.Millisecond) // e.g. EMFILE: give the receiver time to close some
			continue
		}
		c.SetNoDelay(true)
		select {
		case u.streams <- c:
			u.stats.StreamsAccepted.Add(1)
		default:
			c.Close()
			u.stats.StreamsRefused.Add(1)
		}
	}
}
