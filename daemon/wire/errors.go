package wire

import "errors"

// Errors returned by Decode, the Sealer implementations and ReadFrame.
// Callers test for them with errors.Is; Reason turns them into the label a
// drop counter uses. A frame that fails to decode is dropped, counted and
// never answered (docs/PROTOCOL.md, Wire format): none of these is worth a reply to the sender.
var (
	// ErrShort: the frame is shorter than the envelope header (or the body
	// is missing its type byte).
	ErrShort = errors.New("frame too short")
	// ErrMagic: the frame does not begin with "CK": not ours at all (a port
	// scan, another program on the group).
	ErrMagic = errors.New("bad magic")
	// ErrVersion: the envelope names a format (protocol major) version this
	// code does not speak. Log "unknown protocol version" once per sender,
	// not per frame; Decode's Header then holds only Version.
	ErrVersion = errors.New("unknown protocol version")
	// ErrCluster: the frame is for another cluster on the same network (its
	// cluster tag differs).
	ErrCluster = errors.New("frame for another cluster")
	// ErrKey: the frame cannot be opened: sealed with a key this node does
	// not hold, sent in the clear to a node that requires a key, or failing
	// authentication.
	ErrKey = errors.New("frame cannot be opened")
	// ErrType: the body's message type is unknown: a newer minor version of
	// the protocol, most likely. Dropped like the others, but told apart so
	// a mixed-version cluster does not look like an attack.
	ErrType = errors.New("unknown message type")
	// ErrMalformed: the body does not decode (bad CBOR, a limit exceeded, a
	// field of the wrong type or length), or breaks an invariant of its
	// message (a hash that is not its record's, a HELLO for another sender).
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge: a stream frame declares a length over the reader's
	// maximum, or a frame to write is longer than a length prefix can say.
	ErrTooLarge = errors.New("frame too large")
	// ErrReplay: the frame authenticated but was seen before: an older boot
	// epoch of its sender, or a counter already seen or below the window.
	// A keyed Sealer's Open returns it only after the tag verified, so it
	// never counts forgeries.
	ErrReplay = errors.New("replayed frame")
)

// Reason names the error's kind for a drop metric's label: "short",
// "magic", "version", "cluster", "replay", "key", "type", "malformed",
// "too_large"; "" for nil and "other" for anything else (an I/O error, say).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

var reasons = [...]struct {
	err  error
	name string
}{
	{ErrShort, "short"},
	{ErrMagic, "magic"},
	{ErrVersion, "version"},
	{ErrCluster, "cluster"},
	{ErrReplay, "replay"},
	{ErrKey, "key"},
	{ErrType, "type"},
	{ErrMalformed, "malformed"},
	{ErrTooLarge, "too_large"},
}
