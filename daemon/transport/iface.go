package transport

import (
	"fmt"
	"net"
	"net/netip"
)

// InterfaceIPv4 returns the first IPv4 address of the named interface,
// with its mask, for configuration defaults (bind, broadcast).
func InterfaceIPv4(name string) (netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Prefix{}, err
	}
	ps, err := interfacePrefixes(ifi)
	if err != nil {
		return netip.Prefix{}, err
	}
	if len(ps) == 0 {
		return netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address", name)
	}
	return ps[0], nil
}

// interfacePrefixes lists the IPv4 addresses of ifi, in the kernel's order.
func interfacePrefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifi.Name, err)
	}
	var ps []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP.To4())
		ones, _ := n.Mask.Size()
		if len(n.Mask) == net.IPv6len {
			ones -= 96
		}
		ps = append(ps, netip.PrefixFrom(ip, ones))
	}
	return ps, nil
}

func interfaceAddrs(ifi *net.Interface) ([]netip.Addr, error) {
	ps, err := interfacePrefixes(ifi)
	addrs := make([]netip.Addr, len(ps))
	for i, p := range ps {
		addrs[i] = p.Addr()
	}
	return addrs, err
}

// defaultBroadcast is the directed broadcast address of the interface's
// first IPv4 subnet: the address with every host bit set.
func defaultBroadcast(name string) (netip.Addr, error) {
	p, err := InterfaceIPv4(name)
	if err != nil {
		return netip.Addr{}, err
	}
	if p.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("interface %s: %s has no broadcast address; set one", name, p)
	}
	return broadcastOf(p), nil
}

func broadcastOf(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	for i := range a {
		a[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(a)
}
