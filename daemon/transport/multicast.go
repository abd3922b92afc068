package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// openMulticast joins the group on a socket bound to group:port, which
// every node on the host shares (SO_REUSEADDR, SO_REUSEPORT), and sets the
// unicast socket up to send to it.
//
// Binding to the group address, not 0.0.0.0, keeps unicast traffic to the
// shared port and other groups on it off this socket; IP_MULTICAST_ALL off
// keeps groups joined by other sockets off it too. Go's
// net.ListenMulticastUDP is not used because it turns multicast loopback
// off, and nodes on one host hear each other only through loopback.
func (u *UDP) openMulticast(ifi *net.Interface) error {
	group := netip.AddrPortFrom(u.cfg.Group, uint16(u.cfg.Port))
	lc := net.ListenConfig{Control: controlGroup}
	pc, err := lc.ListenPacket(context.Background(), "udp4", group.String())
	if err != nil {
		return fmt.Errorf("multicast: bind %s: %w", group, err)
	}
	u.shared = pc.(*net.UDPConn)
	gp := ipv4.NewPacketConn(u.shared)
	if err := gp.JoinGroup(ifi, &net.UDPAddr{IP: u.cfg.Group.AsSlice()}); err != nil {
		return fmt.Errorf("multicast: join %s on %s: %w", u.cfg.Group, ifi.Name, err)
	}

	// TTL 0 keeps a loopback cluster on the host: the kernel loops the
	// datagram back to local members, then drops it rather than send it.
	ttl := 1
	if ifi.Flags&net.FlagLoopback != 0 {
		ttl = 0
	}
	up := ipv4.NewPacketConn(u.uc)
	if err := up.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("multicast: interface %s: %w", ifi.Name, err)
	}
	if err := up.SetMulticastLoopback(true); err != nil {
		return fmt.Errorf("multicast: loopback: %w", err)
	}
	if err := up.SetMulticastTTL(ttl); err != nil {
		return fmt.Errorf("multicast: ttl: %w", err)
	}
	u.dests = []netip.AddrPort{group}
	return nil
}
