package cluster

import "errors"

// Errors returned by the node. Callers test for them with errors.Is.
var (
	// ErrTooFewPeers is returned by WaitAcks when fewer peers are alive than
	// acknowledgements were asked for: waiting could not succeed.
	ErrTooFewPeers = errors.New("fewer peers alive than acknowledgements asked")

	// ErrDuplicateID is returned by Run when a HELLO carries this node's id
	// with a newer boot epoch: another process runs on a copy of this data
	// dir (docs/PROTOCOL.md, Data model). Running on would make two nodes write under
	// one id and corrupt every version vector they touch, so the node stops.
	ErrDuplicateID = errors.New("duplicate node id")

	// ErrUnknownPeer is returned by Trust for an id this node has neither
	// heard nor remembers.
	ErrUnknownPeer = errors.New("unknown peer")

	// ErrNotQuarantined is returned by Trust for a peer that is not
	// quarantined: there is nothing to trust.
	ErrNotQuarantined = errors.New("peer is not quarantined")

	// errQuarantined: a session was not opened with a quarantined peer.
	errQuarantined = errors.New("peer is quarantined")

	// errQuarantinedByPeer: the peer declined a sync session because it
	// quarantines this node. It comes wrapped with errRefused.
	errQuarantinedByPeer = errors.New("the peer quarantines this node")

	// errRefused: the peer declined a sync session (it serves too many).
	errRefused = errors.New("sync session refused")
)
