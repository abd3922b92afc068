package transport

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/go-hclog"
)

// resolve checks c, naming the field at fault, and fills in defaults. It
// returns the interface named by c.Interface, or nil when none is.
func (c Config) resolve() (Config, *net.Interface, error) {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if err := c.defaultSizes(); err != nil {
		return c, nil, err
	}
	var ifi *net.Interface
	if c.Interface != "" {
		var err error
		if ifi, err = net.InterfaceByName(c.Interface); err != nil {
			return c, nil, fmt.Errorf("interface: %w", err)
		}
	}
	if err := c.checkMode(ifi); err != nil {
		return c, nil, err
	}
	c.Bind = netip.AddrPortFrom(c.Bind.Addr().Unmap(), c.Bind.Port())
	if !c.Bind.IsValid() {
		c.Bind = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
		if ifi != nil && ifi.Flags&net.FlagLoopback == 0 {
			p, err := InterfaceIPv4(ifi.Name)
			if err != nil {
				return c, nil, fmt.Errorf("bind: no default: %w", err)
			}
			c.Bind = netip.AddrPortFrom(p.Addr(), 0)
		}
	}
	if c.Mode != ModePeers && !c.Bind.Addr().Is4() {
		return c, nil, fmt.Errorf("bind: %s is not IPv4, as %s needs", c.Bind, c.Mode)
	}
	return c, ifi, nil
}

func (c *Config) defaultSizes() error {
	for _, f := range []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"max_datagram", &c.MaxDatagram, DefaultMaxDatagram, maxUDPPayload},
		{"packet_queue", &c.PacketQueue, DefaultPacketQueue, 1 << 20},
		{"stream_queue", &c.StreamQueue, DefaultStreamQueue, 1 << 20},
		{"read_buffer", &c.ReadBuffer, DefaultReadBuffer, 1 << 30},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 || *f.v > f.max {
			return fmt.Errorf("%s: %d is not in 1..%d", f.name, *f.v, f.max)
		}
	}
	return nil
}

func (c *Config) checkMode(ifi *net.Interface) error {
	switch c.Mode {
	case ModeMulticast, ModeBroadcast:
		if c.Port <= 0 || c.Port > 65535 {
			return fmt.Errorf("port: %d is not in 1..65535", c.Port)
		}
	case ModePeers:
	default:
		return fmt.Errorf("mode: %q is not %s, %s or %s", c.Mode, ModeMulticast, ModeBroadcast, ModePeers)
	}
	switch c.Mode {
	case ModeMulticast:
		if ifi == nil {
			return fmt.Errorf("interface: required for %s", c.Mode)
		}
		if !c.Group.Is4() || !c.Group.IsMulticast() {
			return fmt.Errorf("group: %v is not an IPv4 multicast address", c.Group)
		}
	case ModeBroadcast:
		if !c.Broadcast.IsValid() {
			if ifi == nil {
				return fmt.Errorf("broadcast: no address and no interface to take it from")
			}
			b, err := defaultBroadcast(ifi.Name)
			if err != nil {
				return fmt.Errorf("broadcast: %w", err)
			}
			c.Broadcast = b
		}
		if !c.Broadcast.Is4() {
			return fmt.Errorf("broadcast: %v is not an IPv4 address", c.Broadcast)
		}
	case ModePeers:
		for _, p := range c.Peers {
			if !p.IsValid() || p.Port() == 0 || p.Addr().IsUnspecified() {
				return fmt.Errorf("peers: %v is not a host:port", p)
			}
		}
	}
	return nil
}
