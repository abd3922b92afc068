package natstransport

// InjectData hands the stream with our id a data message at offset, as if
// it came from its peer: for the tests of lost messages.
func InjectData(t *Transport, id, offset uint64, p []byte) {
	c := t.lookup(id)
	c.onData(header{kind: kindData, from: c.remote, dst: id, src: c.peerID, value: offset}, p)
}
