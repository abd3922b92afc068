//go:build linux

package rpc

import (
	"net"
	"syscall"
)

// peerUID is the uid of the process that created the listening socket
// conn is connected to, as the kernel recorded it (SO_PEERCRED).
func peerUID(conn net.Conn) (uid int, ok bool, err error) {
	uc, isUnix := conn.(*net.UnixConn)
	if !isUnix {
		return 0, false, errNoCred
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var (
		cred *syscall.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, false, err
	}
	if cerr != nil {
		return 0, false, cerr
	}
	return int(cred.Uid), true, nil
}
