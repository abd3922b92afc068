package natstransport

import (
	"bytes"
	"net/netip"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	from := netip.MustParseAddrPort("[fd00::1]:7237")
	f.Add(appendHeader(nil, header{kind: kindDatagram, from: from}))
	f.Add(append(appendHeader(nil, header{kind: kindData, from: from, dst: 1, src: 2, value: 3}), "data"...))
	f.Add(appendHeader(nil, header{kind: kindAck, from: netip.MustParseAddrPort("10.0.0.1:1"), dst: 1, src: 2, value: 3}))
	f.Add([]byte{1, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := parseHeader(b)
		if err != nil {
			return
		}
		again := append(appendHeader(nil, h), p...)
		h2, p2, err := parseHeader(again)
		if err != nil || h2 != h || !bytes.Equal(p, p2) {
			t.Fatalf("%x: parsed %+v %x; again %+v %x %v", b, h, p, h2, p2, err)
		}
	})
}
