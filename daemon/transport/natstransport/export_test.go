package natstransport

// InjectData hands the stream with our id a data message at offset, as if
// it came from its peer: for the tests of lost messages.
func InjectData(t *Transport, id, offset uint64, p []byte) {
	c := t.lookup(id)
	c.onData(header{kind: kindData, from: c.remote, dst: id, src: c.peerID, value: offset}, p)
}

// Crash drops the connection to NATS without a word to anyone, as a
// killed process would.
func Crash(t *Transport) {
	t.closing.Store(true) // no resets from the disconnect handler
	t.nc.Close()
}
