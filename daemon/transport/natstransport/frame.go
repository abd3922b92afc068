package natstransport

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// formatVersion is the first byte of every message; others are dropped.
const formatVersion = 1

// Message kinds.
const (
	kindDatagram byte = 1 + iota
	kindOpen
	kindAccept
	kindData
	kindAck
	kindFin
	kindReset
	kindPing // a liveness probe, sent as a request; answered by ping, or reset
)

const (
	headerLen       = 20             // version, kind, sender address
	streamHeaderLen = headerLen + 24 // + receiver's id, sender's id, value
)

// header is a decoded message header.
type header struct {
	kind     byte
	from     netip.AddrPort
	dst, src uint64 // stream messages: the receiver's and the sender's stream ids
	value    uint64 // stream messages: window, offset or count, by kind
}

// appendHeader appends a datagram's header, or a stream message's when
// h.kind is not kindDatagram.
func appendHeader(b []byte, h header) []byte {
	a := h.from.Addr().As16()
	b = append(b, formatVersion, h.kind)
	b = append(b, a[:]...)
	b = binary.BigEndian.AppendUint16(b, h.from.Port())
	if h.kind == kindDatagram {
		return b
	}
	b = binary.BigEndian.AppendUint64(b, h.dst)
	b = binary.BigEndian.AppendUint64(b, h.src)
	return binary.BigEndian.AppendUint64(b, h.value)
}

// parseHeader decodes a message's header and returns it with the payload,
// which aliases b.
func parseHeader(b []byte) (header, []byte, error) {
	var h header
	if len(b) < headerLen {
		return h, nil, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	if b[0] != formatVersion {
		return h, nil, fmt.Errorf("%w: format %d", errFormat, b[0])
	}
	h.kind = b[1]
	h.from = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[2:18])).Unmap(), binary.BigEndian.Uint16(b[18:20]))
	switch {
	case h.kind == kindDatagram:
		return h, b[headerLen:], nil
	case h.kind < kindDatagram || h.kind > kindPing:
		return h, nil, fmt.Errorf("%w: kind %d", errFormat, h.kind)
	case len(b) < streamHeaderLen:
		return h, nil, fmt.Errorf("%w: stream message of %d bytes", errShort, len(b))
	}
	h.dst = binary.BigEndian.Uint64(b[20:28])
	h.src = binary.BigEndian.Uint64(b[28:36])
	h.value = binary.BigEndian.Uint64(b[36:44])
	if h.kind != kindData && len(b) > streamHeaderLen {
		return h, nil, fmt.Errorf("%w: payload on a message of kind %d", errFormat, h.kind)
	}
	return h, b[streamHeaderLen:], nil
}
