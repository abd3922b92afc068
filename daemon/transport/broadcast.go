package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// openBroadcast lets the unicast socket send to the broadcast address and
// binds the shared receiving socket to broadcast:port.
//
// Binding to the broadcast address rather than 0.0.0.0 keeps unicast
// traffic to the shared port off this socket; every node must therefore
// use the same broadcast address (a node sending to 255.255.255.255 is not
// heard by one bound to the subnet's). SO_REUSEADDR and SO_REUSEPORT let
// every node on the host bind it; Linux delivers each broadcast to all of
// them (the tests check this), while unicast to a SO_REUSEPORT group would
// reach only one, which is why replies use the unicast socket.
func (u *UDP) openBroadcast() error {
	if err := enableBroadcast(u.uc); err != nil {
		return fmt.Errorf("broadcast: %w", err)
	}
	at := netip.AddrPortFrom(u.cfg.Broadcast, uint16(u.cfg.Port))
	lc := net.ListenConfig{Control: controlShared}
	pc, err := lc.ListenPacket(context.Background(), "udp4", at.String())
	if err != nil {
		return fmt.Errorf("broadcast: bind %s: %w", at, err)
	}
	u.shared = pc.(*net.UDPConn)
	u.dests = []netip.AddrPort{at}
	return nil
}
