package transport

import "errors"

// ErrTooLarge is returned by Broadcast and SendTo for a datagram longer
// than Config.MaxDatagram. Nothing is sent: the protocol should announce
// the message and serve it over a stream instead.
var ErrTooLarge = errors.New("datagram larger than max_datagram")
