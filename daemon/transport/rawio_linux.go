//go:build linux

package transport

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A datagram's receive and send are raw system calls here, not the
// runtime's: both are non-blocking (the socket is, and sends say
// MSG_DONTWAIT), so they never hold a thread long, and a raw call does not
// wake the runtime's monitor thread (sysmon), which every system call
// entered through the runtime does when the process was idle. At 40
// processes on 2 cores that wake-up, and the monitor's polling that
// follows it, was a third of what answering a fresh read's QUERY cost a
// node (docs/ARCHITECTURE.md, Fresh reads at scale). The socket's
// readiness still comes from the runtime's network poller
// (syscall.RawConn.Read).

// reader reads datagrams from one socket with raw recvmsg calls. Its
// buffers are its own, reused by every read: one reading goroutine only.
type reader struct {
	rc  syscall.RawConn
	msg unix.Msghdr
	iov unix.Iovec
	rsa unix.RawSockaddrAny
	// the outcome of the last call, set by readFn
	n, oobn int
	errno   syscall.Errno
	readFn  func(fd uintptr) bool
	// the zone of the last link-local source (zone)
	zoneIndex uint32
	zoneName  string
}

func newReader(c *net.UDPConn) (*reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &reader{rc: rc}
	r.readFn = r.recvmsg
	return r, nil
}

// read is ReadMsgUDPAddrPort: one datagram into buf (truncated to it),
// its control messages into oob, and its source.
func (r *reader) read(buf, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	r.iov.Base = &buf[0]
	r.iov.SetLen(len(buf))
	r.msg.Iov, r.msg.Iovlen = &r.iov, 1
	r.msg.Control = nil
	if len(oob) > 0 {
		r.msg.Control = &oob[0]
	}
	if err := r.rc.Read(r.readFn); err != nil {
		return 0, 0, netip.AddrPort{}, err
	}
	if r.errno != 0 {
		return 0, 0, netip.AddrPort{}, os.NewSyscallError("recvmsg", r.errno)
	}
	return r.n, r.oobn, r.source(), nil
}

// recvmsg is one raw recvmsg (again if interrupted); false (wait for
// the socket) on EAGAIN.
func (r *reader) recvmsg(fd uintptr) bool {
	r.msg.Name = (*byte)(unsafe.Pointer(&r.rsa))
	r.msg.Namelen = uint32(unsafe.Sizeof(r.rsa))
	r.msg.SetControllen(0)
	if r.msg.Control != nil {
		r.msg.SetControllen(oobSize)
	}
	n, _, e := syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), unix.MSG_DONTWAIT)
	for e == unix.EINTR {
		n, _, e = syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), unix.MSG_DONTWAIT)
	}
	if e == unix.EAGAIN {
		return false
	}
	r.n, r.oobn, r.errno = int(n), int(r.msg.Controllen), e
	return true
}

// source is the last datagram's source address.
func (r *reader) source() netip.AddrPort {
	switch r.rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), netPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.rsa))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 { // link-local: zoned by interface name, as the net package does
			a = a.WithZone(r.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, netPort(sa.Port))
	}
	return netip.AddrPort{}
}

// zone names interface index i (its name, else the number), remembering
// the last one asked.
func (r *reader) zone(i uint32) string {
	if i != r.zoneIndex || r.zoneName == "" {
		r.zoneIndex, r.zoneName = i, strconv.FormatUint(uint64(i), 10)
		if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
			r.zoneName = ifi.Name
		}
	}
	return r.zoneName
}

// netPort is a port as a sockaddr holds it (network byte order).
func netPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// sendNoWait sends one datagram with MSG_DONTWAIT. Go's WriteTo would park
// the goroutine until the socket buffer has room; a best-effort transport
// drops instead (sent false, no error).
func sendNoWait(_ *net.UDPConn, rc syscall.RawConn, to netip.AddrPort, b []byte) (sent bool, err error) {
	var (
		sa4   unix.RawSockaddrInet4
		sa6   unix.RawSockaddrInet6
		sa    unsafe.Pointer
		salen uintptr
	)
	port := netPort(to.Port()) // the swap is its own inverse
	if a := to.Addr(); a.Is4() {
		sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: port, Addr: a.As4()}
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port, Addr: a.As16()}
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno = syscall.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(sa), salen)
			if errno != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return false, err
	}
	switch errno {
	case 0:
		return true, nil
	case unix.EAGAIN, unix.ENOBUFS:
		return false, nil
	}
	return false, os.NewSyscallError("sendto", errno)
}
