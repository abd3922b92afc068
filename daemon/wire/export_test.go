package wire

// The reflection codec, which the fast one (fastcodec.go) must match: the
// differential tests, the fuzz target and the benchmarks call both.

// EncodeReflect is Encode by the cbor package alone.
func EncodeReflect(h Header, msg Message, s Sealer) ([]byte, error) {
	return encode(h, msg, s, false)
}

// DecodeReflect is Decode by the cbor package alone.
func DecodeReflect(b []byte, s Sealer) (Header, Message, error) {
	return decode(b, s, false)
}

// FastDecodes reports whether the fast reader takes the body of a
// plaintext frame itself, rather than leaving it to the cbor package.
func FastDecodes(frame []byte) bool {
	if len(frame) < HeaderSize+2 {
		return false
	}
	_, ok := parseFast(MsgType(frame[HeaderSize]), frame[HeaderSize+1:])
	return ok
}

// ParseBoth decodes the CBOR map b of a body of type t both ways, before
// any check: the direct reader's message (nil when it leaves b to
// reflection), and the cbor package's message or error.
func ParseBoth(t MsgType, b []byte) (fast, slow Message, err error) {
	if m, ok := parseFast(t, b); ok {
		fast = m
	}
	if slow = newMessage(t); slow == nil {
		return fast, nil, ErrType
	}
	return fast, slow, decMode.Unmarshal(b, slow)
}
