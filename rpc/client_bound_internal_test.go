package rpc

import (
	"testing"
	"time"
)

// A write that waits for acknowledgements is bounded by its own wait plus
// WriteMargin, not by the client's Timeout alone.
func TestWriteBound(t *testing.T) {
	s := time.Second
	tests := []struct {
		client time.Duration
		opts   WriteOptions
		want   time.Duration
	}{
		{30 * s, WriteOptions{}, 30 * s},
		{0, WriteOptions{}, 0},
		{30 * s, WriteOptions{Wait: 2}, 30 * s},                                // the daemon's 5s wait + 5s < 30s
		{2 * s, WriteOptions{Wait: 2}, DefaultWaitTimeout + WriteMargin},       // at least the daemon's wait + margin
		{0, WriteOptions{Wait: 2}, 0},                                          // no bound asked
		{30 * s, WriteOptions{Wait: 2, Timeout: Duration(s)}, s + WriteMargin}, // --timeout D: D + margin
		{0, WriteOptions{Timeout: Duration(60 * s)}, 60*s + WriteMargin},
	}
	for _, tt := range tests {
		c := NewClientOptions("/nonexistent", ClientOptions{Timeout: tt.client})
		if got := c.writeBound(tt.opts); got != tt.want {
			t.Errorf("client %v, %+v: bound %v, want %v", tt.client, tt.opts, got, tt.want)
		}
	}
}

// A wait_timeout's JSON always carries acked, 0 included; other errors
// carry neither.
func TestErrorLineAcked(t *testing.T) {
	e := Errorf(ErrWaitTimeout, "stored, but only 0 of 2 peers acknowledged (within 5s)")
	e.Wanted = 2
	if got, want := string(errorLine(e)), `{"error":"stored, but only 0 of 2 peers acknowledged (within 5s)","code":"wait_timeout","acked":0,"wanted":2}`; got != want {
		t.Errorf("error line %s, want %s", got, want)
	}
	if got, want := string(errorLine(ErrNotFound)), `{"error":"key not found","code":"not_found"}`; got != want {
		t.Errorf("error line %s, want %s", got, want)
	}
}
