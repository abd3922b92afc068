package transport

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
)

// Our own datagrams on the shared socket. Every datagram a node sends to
// the group or broadcast address comes back to its own shared socket
// (multicast loopback is on so that the other nodes of the host hear it;
// broadcast always loops). Dropped by source in receive, each still cost
// a wake-up of the reading goroutine and a recvmsg: one per datagram the
// node sends. A classic BPF socket filter drops them in the kernel
// instead, before they are queued (docs/ARCHITECTURE.md, "Overlapped
// replication"). Best effort: where it cannot be attached (not Linux, a
// kernel without socket filters) the check in receive does the work, as
// it still does for whatever the filter lets through.

// skfNetOff is the kernel's SKF_NET_OFF: a classic BPF load at this offset
// plus n reads byte n of the network (IP) header. Plain offsets start at
// the UDP header on a UDP socket.
const skfNetOff = 0xfff00000

// maxFilterSources bounds the sources the filter compares: each takes
// four instructions, and a jump reaches at most 255 ahead.
const maxFilterSources = 60

// filterSelf attaches to the shared socket a filter that drops datagrams
// whose source is one of this node's addresses (u.self), and records
// whether it did (selfFiltered).
func (u *UDP) filterSelf() {
	if u.shared == nil {
		return
	}
	prog := selfFilter(u.self)
	if prog == nil {
		return
	}
	raw, err := bpf.Assemble(prog)
	if err == nil {
		err = ipv4.NewPacketConn(u.shared).SetBPF(raw)
	}
	if err != nil {
		u.log.Debug("no socket filter for our own datagrams: they are dropped once read", "error", err)
		return
	}
	u.selfFiltered = true
}

// selfFilter is a program that drops UDP datagrams from any of the IPv4
// sources self and keeps every other datagram whole; nil when self holds
// none.
func selfFilter(self []netip.AddrPort) []bpf.Instruction {
	var srcs []netip.AddrPort
	for _, s := range self {
		s = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
		if s.Addr().Is4() && !s.Addr().IsUnspecified() && len(srcs) < maxFilterSources {
			srcs = append(srcs, s)
		}
	}
	if len(srcs) == 0 {
		return nil
	}
	var p []bpf.Instruction
	for i, s := range srcs {
		a := s.Addr().As4()
		p = append(p,
			bpf.LoadAbsolute{Off: 0, Size: 2}, // the UDP source port
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(s.Port()), SkipTrue: 2},
			bpf.LoadAbsolute{Off: skfNetOff + 12, Size: 4}, // the IPv4 source address
			// to the drop after the keep: past the remaining sources'
			// four instructions each and the keep
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(a[:]), SkipTrue: uint8(4*(len(srcs)-1-i) + 1)},
		)
	}
	return append(p,
		bpf.RetConstant{Val: 0xffffffff}, // keep, whole
		bpf.RetConstant{Val: 0},          // drop
	)
}
