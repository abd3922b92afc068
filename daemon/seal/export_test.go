package seal

import (
	"testing"
	"time"
)

// SetOpenHook makes fn run before every datagram AEAD attempt until the
// test ends.
func SetOpenHook(t testing.TB, fn func()) {
	testHookOpen.Store(&fn)
	t.Cleanup(func() { testHookOpen.Store(nil) })
}

// SetNonces makes every handshake nonce come from fn until the test ends.
func SetNonces(t testing.TB, fn func([]byte)) {
	old := testNonces.Swap(&fn)
	t.Cleanup(func() { testNonces.Store(old) })
}

// SetHandshakeTimeout shortens the handshake deadline until the test ends.
func SetHandshakeTimeout(t testing.TB, d time.Duration) {
	old := handshakeTimeout
	handshakeTimeout = d
	t.Cleanup(func() { handshakeTimeout = old })
}

// SetMaxMarks bounds EpochFiles to n senders until the test ends.
func SetMaxMarks(t testing.TB, n int) {
	old := maxMarks
	maxMarks = n
	t.Cleanup(func() { maxMarks = old })
}

// SetClock makes r read the time from now.
func (r *Replay) SetClock(now func() time.Time) { r.now = now }

const (
	MaxSenders = maxSenders
	MinBlock   = minBlock
)
