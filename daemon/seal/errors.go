package seal

import (
	"errors"
	"fmt"

	"github.com/cloudknowledge/ck/daemon/wire"
)

// Errors of this package. Frames that fail on the datagram path come back
// wrapping the wire package's sentinels (wire.ErrKey, wire.ErrReplay,
// wire.ErrShort), so wire.Reason labels them for the drop counter.
var (
	// ErrReplay is wire.ErrReplay: an authenticated frame seen before.
	ErrReplay = wire.ErrReplay

	// ErrBadKey: a key that is not 32 bytes of padded standard base64.
	// The error never quotes the key.
	ErrBadKey = errors.New("invalid cluster key")

	// ErrKeyFileMode: the keyring file may be read or written by group or
	// others. The error names the file and its mode.
	ErrKeyFileMode = errors.New("keyring file is accessible to group or others")

	// ErrKeyFileOwner: the default key file belongs to another user, who
	// could then choose the key this node trusts. The error names the
	// file and both uids.
	ErrKeyFileOwner = errors.New("key file is owned by another user")

	// ErrHandshake: a stream's handshake failed: the peer sent something
	// that is not a hello of this version, names a key this node does not
	// hold, is not the expected node, or could not prove it holds the key.
	// Wrapped together with wire.ErrKey when the key is the problem.
	ErrHandshake = errors.New("stream handshake failed")

	// ErrTruncated: a stream ended without its sealed close record, so
	// what arrived may be a prefix of what was sent. It wraps
	// io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("stream truncated")
)

// Precomputed so that rejecting a frame allocates nothing.
var (
	errNotSealed = fmt.Errorf("%w: not sealed, and this node requires a key", wire.ErrKey)
	errTagged    = fmt.Errorf("%w: carries a cluster tag in the clear, so it is not sealed by a keyed node", wire.ErrKey)
	errUnknownID = fmt.Errorf("%w: sealed with a key id not in the keyring", wire.ErrKey)
	errAuth      = fmt.Errorf("%w: does not authenticate", wire.ErrKey)
	errShortTag  = fmt.Errorf("%w: no room for the authentication tag", wire.ErrShort)
	errOld       = fmt.Errorf("%w: from an older boot epoch of its sender", wire.ErrReplay)
	errSeen      = fmt.Errorf("%w: counter already seen", wire.ErrReplay)
	errBelow     = fmt.Errorf("%w: counter below the replay window", wire.ErrReplay)
)
