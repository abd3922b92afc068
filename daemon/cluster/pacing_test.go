package cluster

import (
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestPacing: sessions that repair nothing double the wait before the
// next, from sync_interval to its cap; one that repairs, or any evidence
// of a fault, lifts it; a HELLO inside the wait opens nothing unless its
// difference is stable.
func TestPacing(t *testing.T) {
	const interval = time.Second
	now := time.Unix(1_800_000_000, 0)
	s := newSyncer(DefaultPurgeLogTTL, interval)
	s.synced()
	var gaps []time.Duration
	for range 9 {
		s.sessionDone(false, now)
		gaps = append(gaps, s.gap)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if gaps[i] != want[i]*time.Second {
			t.Fatalf("gaps after empty sessions %v, want %v s", gaps, want)
		}
	}
	if d := s.nextOpen.Sub(now); d < 48*time.Second || d > 72*time.Second {
		t.Errorf("next session %v after the last, want 60 s ± 20%%", d)
	}

	peer := store.NodeID{7}
	hello := func(counter uint64, theirs, ours byte) helloVerdict {
		v := s.noteHello(peer, "p", wire.Header{Sender: peer, Epoch: 1, Counter: counter}, [32]byte{theirs}, [32]byte{ours}, false, now)
		if v.open {
			s.end()
		}
		return v
	}
	for _, tc := range []struct {
		name          string
		counter       uint64
		theirs, ours  byte
		open          bool
		faultsCounted uint64 // "stable difference" evidence so far
	}{
		{"first difference", 1, 1, 2, false, 0},
		{"second, both roots moved: paced", 2, 3, 4, false, 0},
		{"third, both roots moved: paced", 3, 5, 6, false, 0},
		{"the same difference again: a fault, open", 4, 5, 6, true, 1},
		{"the same again: taken once", 5, 5, 6, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := hello(tc.counter, tc.theirs, tc.ours); v.open != tc.open {
				t.Errorf("open = %v, want %v", v.open, tc.open)
			}
			if got := s.faults["stable difference"]; got != tc.faultsCounted {
				t.Errorf("%d stable differences taken as faults, want %d", got, tc.faultsCounted)
			}
		})
	}

	s.sessionDone(true, now)
	if s.gap != 0 || s.nextOpen.After(now) {
		t.Errorf("after a session that repaired: gap %v, next %v", s.gap, s.nextOpen.Sub(now))
	}
	s.sessionDone(false, now)
	s.tick(10, 3, now) // the transport dropped 3 datagrams
	if s.gap != 0 || s.faults["drops"] != 1 {
		t.Errorf("drops did not lift the pacing: gap %v, faults %v", s.gap, s.faults)
	}
	s.tick(20, 3, now)
	if s.settled() != 10 || s.faults["drops"] != 1 {
		t.Errorf("settled %d (want the clock a tick before, 10), faults %v", s.settled(), s.faults)
	}
}
