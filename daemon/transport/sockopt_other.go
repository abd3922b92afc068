//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// The shared group and broadcast sockets rely on Linux semantics
// (IP_MULTICAST_ALL, SO_REUSEPORT delivery); elsewhere only peers mode
// works.
var errNotLinux = errors.New("shared multicast and broadcast sockets need Linux; use peers")

func controlShared(_, _ string, _ syscall.RawConn) error { return errNotLinux }

func controlGroup(_, _ string, _ syscall.RawConn) error { return errNotLinux }

func enableBroadcast(*net.UDPConn) error { return errNotLinux }

func sendNoWait(uc *net.UDPConn, _ syscall.RawConn, to netip.AddrPort, b []byte) (bool, error) {
	_, err := uc.WriteToUDPAddrPort(b, to)
	return err == nil, err
}

// oobSize is zero: the kernel's drop count is read on Linux only.
const oobSize = 0

// prepareReceive asks for a receive buffer of size bytes; the granted size
// is not known here, so it returns size.
func prepareReceive(uc *net.UDPConn, size int) (int, error) {
	return size, uc.SetReadBuffer(size)
}

func rxqOverflow([]byte) (uint32, bool) { return 0, false }

// reader reads datagrams through the net package.
type reader struct{ c *net.UDPConn }

func newReader(c *net.UDPConn) (*reader, error) { return &reader{c: c}, nil }

func (r *reader) read(buf, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	n, oobn, _, from, err = r.c.ReadMsgUDPAddrPort(buf, oob)
	return n, oobn, from, err
}
