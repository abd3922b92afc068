//go:build linux

package transport

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

type sockopt struct {
	level, name, value int
	label              string
}

var (
	optReuseAddr = sockopt{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"}
	optReusePort = sockopt{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"}
	// Off, a socket receives only the groups it joined itself, not every
	// group any socket of the host joined that matches its binding.
	optMulticastAllOff = sockopt{unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL"}
	optBroadcast       = sockopt{unix.SOL_SOCKET, unix.SO_BROADCAST, 1, "SO_BROADCAST"}
	// Every datagram read then carries the count of those the kernel
	// dropped on this socket so far, its buffer full (rxqOverflow).
	optRxqOvfl = sockopt{unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1, "SO_RXQ_OVFL"}
)

// oobSize is the control-message room a read needs for SO_RXQ_OVFL.
var oobSize = unix.CmsgSpace(4)

// prepareReceive asks for a receive buffer of size bytes — past
// net.core.rmem_max when the process may (SO_RCVBUFFORCE), else up to it —
// and for the kernel's drop count on every read. It returns the buffer
// the kernel granted.
func prepareReceive(uc *net.UDPConn, size int) (int, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	if err := setsockopts(rc, optRxqOvfl); err != nil {
		return 0, err
	}
	got := 0
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size); e != nil {
				serr = os.NewSyscallError("setsockopt SO_RCVBUF", e)
				return
			}
		}
		// The kernel doubles what it grants, for its own bookkeeping.
		v, e := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if e != nil {
			serr = os.NewSyscallError("getsockopt SO_RCVBUF", e)
			return
		}
		got = v / 2
	})
	if err != nil {
		return 0, err
	}
	return got, serr
}

// rxqOverflow returns the kernel's count of datagrams dropped on the
// socket, from a read's control messages; ok false when absent.
func rxqOverflow(oob []byte) (n uint32, ok bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data), true
		}
	}
	return 0, false
}

// controlShared prepares a socket that every node on the host binds.
func controlShared(_, _ string, c syscall.RawConn) error {
	return setsockopts(c, optReuseAddr, optReusePort)
}

// controlGroup prepares the shared multicast socket.
func controlGroup(_, _ string, c syscall.RawConn) error {
	return setsockopts(c, optReuseAddr, optReusePort, optMulticastAllOff)
}

func enableBroadcast(uc *net.UDPConn) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	return setsockopts(rc, optBroadcast)
}

func setsockopts(c syscall.RawConn, opts ...sockopt) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range opts {
			if e := unix.SetsockoptInt(int(fd), o.level, o.name, o.value); e != nil {
				serr = os.NewSyscallError("setsockopt "+o.label, e)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
