//go:build !linux

package rpc

import "net"

// peerUID cannot tell the peer's credentials here (SO_PEERCRED is
// Linux's); CheckServer then trusts the socket's path alone.
func peerUID(net.Conn) (int, bool, error) { return 0, false, nil }
