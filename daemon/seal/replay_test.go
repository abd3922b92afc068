package seal_test

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// receiver is a node's receiving side: its keyed sealer with a replay
// filter persisting to a file in dir, as after a (re)start.
type receiver struct {
	d      *seal.Datagram
	replay *seal.Replay
}

func startReceiver(t *testing.T, r *seal.Keyring, dir string) *receiver {
	t.Helper()
	es, err := seal.OpenEpochFile(filepath.Join(dir, "replay-marks"))
	if err != nil {
		t.Fatal(err)
	}
	rp := seal.NewReplay(es)
	return &receiver{d: seal.NewDatagram(r, cluster, rp), replay: rp}
}

func (r *receiver) accepts(t *testing.T, what string, b []byte) {
	t.Helper()
	if _, _, err := decode(b, r.d); err != nil {
		t.Errorf("%s: refused: %v", what, err)
	}
}

func (r *receiver) refuses(t *testing.T, what string, b []byte) {
	t.Helper()
	_, _, err := decode(b, r.d)
	if !errors.Is(err, seal.ErrReplay) || errors.Is(err, wire.ErrKey) || wire.Reason(err) != "replay" {
		t.Errorf("%s: Decode = %v (reason %q), want a replay", what, err, wire.Reason(err))
	}
}

// TestReplayRefused: a captured datagram replayed at once, later, after its
// sender restarted, and after the receiver restarted — cleanly or not — is
// dropped.
func TestReplayRefused(t *testing.T) {
	kr := ring(t, key("a"))
	d := seal.NewDatagram(kr, cluster, nil)

	t.Run("at once", func(t *testing.T) {
		r := startReceiver(t, kr, t.TempDir())
		f := newSender(nodeA, epoch1, d).frame(t, update())
		r.accepts(t, "first", f)
		r.refuses(t, "again", f)
		r.refuses(t, "and again", f)
	})
	t.Run("later", func(t *testing.T) {
		r := startReceiver(t, kr, t.TempDir())
		s := newSender(nodeA, epoch1, d)
		fs := s.frames(t, 3*seal.WindowSize)
		for i, f := range fs {
			if i != 5 {
				r.accepts(t, "in order", f)
			}
		}
		r.refuses(t, "seen, long ago", fs[0])
		r.refuses(t, "never seen, below the window", fs[5])
		r.refuses(t, "seen, within the window", fs[len(fs)-2])
	})
	t.Run("after the sender restarted", func(t *testing.T) {
		r := startReceiver(t, kr, t.TempDir())
		old := newSender(nodeA, epoch1, d)
		fs := old.frames(t, 3)
		r.accepts(t, "old epoch", fs[0])
		r.accepts(t, "new epoch", newSender(nodeA, epoch1+5000, d).frame(t, update()))
		r.refuses(t, "old epoch, seen", fs[0])
		r.refuses(t, "old epoch, never seen", fs[2])
	})
	t.Run("after the receiver stopped", func(t *testing.T) {
		dir := t.TempDir()
		r := startReceiver(t, kr, dir)
		s := newSender(nodeA, epoch1, d)
		fs := s.frames(t, 50)
		for _, f := range fs[:40] {
			r.accepts(t, "before", f)
		}
		if err := r.replay.Close(); err != nil {
			t.Fatal(err)
		}
		r = startReceiver(t, kr, dir)
		r.refuses(t, "seen before the restart", fs[0])
		r.refuses(t, "the last one seen", fs[39])
		// A clean stop saved the exact mark: nothing fresh is lost.
		r.accepts(t, "fresh", fs[40])
		r.accepts(t, "fresh, reordered", fs[45])
		r.accepts(t, "fresh, late", fs[41])
	})
	t.Run("after the receiver crashed", func(t *testing.T) {
		dir := t.TempDir()
		r := startReceiver(t, kr, dir)
		s := newSender(nodeA, epoch1, d)
		fs := s.frames(t, 40)
		for _, f := range fs[:10] {
			r.accepts(t, "before", f)
		}
		// No Close: what survives is the reservation.
		r = startReceiver(t, kr, dir)
		for _, f := range fs[:10] {
			r.refuses(t, "seen before the crash", f)
		}
		// Frames up to the reservation are refused too (the price of a
		// crash); after them the sender is heard again.
		late := s.frames(t, seal.MinBlock)
		r.accepts(t, "past the reservation", late[len(late)-1])
	})
	t.Run("after the receiver restarted, the sender too", func(t *testing.T) {
		dir := t.TempDir()
		r := startReceiver(t, kr, dir)
		old := newSender(nodeA, epoch1, d).frames(t, 2)
		r.accepts(t, "old epoch", old[0])
		r.accepts(t, "new epoch", newSender(nodeA, epoch1+1, d).frame(t, update()))
		r = startReceiver(t, kr, dir)
		r.refuses(t, "old epoch, never seen", old[1])
	})
}

// TestReplayReordering: frames arriving in any order within the window are
// each accepted once; the window's edge is exact.
func TestReplayReordering(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	r := seal.NewReplay(&seal.MemoryEpochs{})
	const n = 5000
	// Deliver 1..n shuffled within blocks of the window's size, so no
	// frame arrives more than a window late.
	order := make([]uint64, 0, n)
	for base := uint64(1); base <= n; base += seal.WindowSize {
		block := make([]uint64, 0, seal.WindowSize)
		for c := base; c < base+seal.WindowSize && c <= n; c++ {
			block = append(block, c)
		}
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
		order = append(order, block...)
	}
	for _, c := range order {
		if err := r.Check(nodeA, epoch1, c); err != nil {
			t.Fatalf("counter %d: %v", c, err)
		}
	}
	for c := uint64(n - seal.WindowSize + 1); c <= n; c++ {
		if err := r.Check(nodeA, epoch1, c); !errors.Is(err, seal.ErrReplay) {
			t.Fatalf("counter %d again: %v", c, err)
		}
	}

	// The edge: with top T, T-WindowSize+1 is within, T-WindowSize below.
	r = seal.NewReplay(&seal.MemoryEpochs{})
	const top = 10_000
	for _, c := range []struct {
		c    uint64
		want error
	}{
		{top, nil},
		{top - seal.WindowSize + 1, nil},
		{top - seal.WindowSize, seal.ErrReplay},
		{top - 1, nil},
		{top - 1, seal.ErrReplay},
		{top + seal.WindowSize + 5, nil},
		{top, seal.ErrReplay}, // pushed out
		{0, seal.ErrReplay},
	} {
		if err := r.Check(nodeA, epoch1, c.c); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("counter %d: %v, want %v", c.c, err, c.want)
		}
	}
	if err := r.Check(nodeB, epoch1, 0); err == nil {
		t.Error("counter 0 accepted from a new sender")
	}
}

// TestUnauthenticatedNeverMoves: a forged frame with a huge counter fails
// authentication and leaves the window where it was.
func TestUnauthenticatedNeverMoves(t *testing.T) {
	kr := ring(t, key("a"))
	r := startReceiver(t, kr, t.TempDir())
	s := newSender(nodeA, epoch1, seal.NewDatagram(kr, cluster, nil))
	fs := s.frames(t, 3)
	r.accepts(t, "first", fs[0])
	for _, h := range []wire.Header{
		{Sender: nodeA, Epoch: epoch1, Counter: 1 << 40},
		{Sender: nodeA, Epoch: epoch1 + 1<<40, Counter: 1},
	} {
		forged := s.frame(t, update())
		b, _ := h.AppendBinary(nil)
		copy(forged[24:40], b[24:40]) // epoch and counter
		if _, _, err := decode(forged, r.d); !errors.Is(err, wire.ErrKey) {
			t.Fatalf("forged: %v", err)
		}
	}
	r.accepts(t, "the next real one", fs[2])
	r.accepts(t, "a late real one", fs[1])
}

// failingStore fails Save while fail is set.
type failingStore struct {
	seal.MemoryEpochs
	fail bool
}

func (f *failingStore) SaveAll(marks map[store.NodeID]seal.Mark) error {
	if f.fail {
		return errors.New("disk full")
	}
	return f.MemoryEpochs.SaveAll(marks)
}

// TestReplayFailsClosed: when the mark cannot be saved the frame is
// refused and nothing changes, so it is accepted once the store recovers.
func TestReplayFailsClosed(t *testing.T) {
	es := &failingStore{fail: true}
	r := seal.NewReplay(es)
	err := r.Check(nodeA, epoch1, 1)
	if !errors.Is(err, seal.ErrReplay) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Check with a failing store = %v", err)
	}
	es.fail = false
	if err := r.Check(nodeA, epoch1, 1); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	// A failed write that would have renewed A's reservation with B's
	// leaves A's as it was: A is accepted within it, refused past it.
	saved := es.Load(nodeA)
	if err := r.Check(nodeA, epoch1, 2); err != nil {
		t.Fatal(err)
	}
	es.fail = true
	if err := r.Check(nodeB, epoch1, 1); !errors.Is(err, seal.ErrReplay) {
		t.Fatalf("B with a failing store: %v", err)
	}
	if m := es.Load(nodeA); m != saved {
		t.Errorf("a failed write changed A's mark from %+v to %+v", saved, m)
	}
	if err := r.Check(nodeA, epoch1, saved.Counter); err != nil {
		t.Errorf("A within its reservation: %v", err)
	}
	if err := r.Check(nodeA, epoch1, saved.Counter+1); !errors.Is(err, seal.ErrReplay) {
		t.Errorf("A past its reservation with a failing store: %v", err)
	}
}

// TestReplayReservations: saves are rare for a busy sender and each covers
// what was accepted.
func TestReplayReservations(t *testing.T) {
	es := &countingStore{}
	r := seal.NewReplay(es)
	now := time.Unix(0, 0)
	r.SetClock(func() time.Time { return now })
	for c := uint64(1); c <= 100_000; c++ {
		now = now.Add(time.Millisecond / 10) // 10,000 frames a second
		if err := r.Check(nodeA, epoch1, c); err != nil {
			t.Fatal(err)
		}
		if m := es.Load(nodeA); m.Counter < c || m.Epoch != epoch1 {
			t.Fatalf("counter %d accepted with mark %+v saved", c, m)
		}
	}
	if es.saves > 30 {
		t.Errorf("%d saves for 10 s of a busy sender", es.saves)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if m := es.Load(nodeA); m.Counter != 100_000 {
		t.Errorf("after Flush the mark is %+v, want the exact top", m)
	}
}

// countingStore counts writes (SaveAll calls) and the marks they carry.
type countingStore struct {
	seal.MemoryEpochs
	saves, marks int
}

func (c *countingStore) SaveAll(marks map[store.NodeID]seal.Mark) error {
	c.saves++
	c.marks += len(marks)
	return c.MemoryEpochs.SaveAll(marks)
}

// TestReplayEviction: a sender evicted from memory is remembered through
// its saved mark.
func TestReplayEviction(t *testing.T) {
	es := &seal.MemoryEpochs{}
	r := seal.NewReplay(es)
	for c := uint64(1); c <= 10; c++ {
		r.Check(nodeA, epoch1, c)
	}
	for i := range seal.MaxSenders {
		id := store.NodeID{0xee, byte(i >> 8), byte(i)}
		if err := r.Check(id, epoch1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Check(nodeA, epoch1, 10); !errors.Is(err, seal.ErrReplay) {
		t.Errorf("evicted sender's frame replayed: %v", err)
	}
	if err := r.Check(nodeA, epoch1, 11); err != nil {
		t.Errorf("evicted sender's next frame: %v", err)
	}
}

// senderID is the i-th of many test senders.
func senderID(i int) store.NodeID { return store.NodeID{0x5e, byte(i >> 8), byte(i)} }

// TestReplayBatchedReservations: however many senders are busy, marks are
// saved about once per saveEvery, each save renewing every active sender,
// and the saved counter of every sender covers all it sent at all times.
func TestReplayBatchedReservations(t *testing.T) {
	const senders = 100
	for _, c := range []struct {
		name   string
		period func(i int) time.Duration // between two frames of sender i
		// maxSaves bounds the writes in the measured 40 s (after 20 s of
		// warming up): about one per saveEvery, 20, at most, against one
		// per busy sender and saveEvery, 2,000, if each were saved alone.
		maxSaves int
	}{
		{"busy", func(i int) time.Duration { return time.Second / time.Duration(20+i) }, 30},
		{"idle", func(i int) time.Duration { return 5*time.Second + time.Duration(i)*10*time.Millisecond }, 30},
		{"one very busy", func(i int) time.Duration {
			if i == 0 {
				return time.Second / 10_000
			}
			return time.Second
		}, 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := &countingStore{}
			r := seal.NewReplay(es)
			now := time.Unix(0, 0)
			r.SetClock(func() time.Time { return now })
			next := make([]time.Time, senders) // when sender i sends next
			top := make([]uint64, senders)
			for i := range next {
				next[i] = now.Add(time.Duration(i) * c.period(i) / senders)
			}
			savesAtWarm := 0
			for step := time.Duration(0); step < 60*time.Second; step += time.Millisecond {
				now = time.Unix(0, 0).Add(step)
				if step == 20*time.Second {
					savesAtWarm = es.saves
				}
				for i := range senders {
					for !next[i].After(now) {
						top[i]++
						if err := r.Check(senderID(i), epoch1, top[i]); err != nil {
							t.Fatalf("sender %d counter %d: %v", i, top[i], err)
						}
						next[i] = next[i].Add(c.period(i))
					}
				}
				for i := range senders {
					if m := es.Load(senderID(i)); top[i] > 0 && (m.Epoch != epoch1 || m.Counter < top[i]) {
						t.Fatalf("at %v sender %d accepted %d with mark %+v saved", step, i, top[i], m)
					}
				}
			}
			// After a crash each sender's frames up to its reservation
			// would be refused: no more than a few saveEvery of them, or
			// minBlock of a slow sender.
			for i := range senders {
				ahead := es.Load(senderID(i)).Counter - top[i]
				rate := float64(time.Second) / float64(c.period(i))
				if limit := max(2*seal.MinBlock, uint64(rate*16)); ahead > limit {
					t.Errorf("sender %d (%.1f frames/s) has %d frames reserved ahead, want at most %d", i, rate, ahead, limit)
				}
			}
			saves := es.saves - savesAtWarm
			t.Logf("%d writes in 40 s, %d marks in all", saves, es.marks)
			if saves > c.maxSaves {
				t.Errorf("%d writes in 40 s with %d senders, want at most %d", saves, senders, c.maxSaves)
			}
		})
	}
}

// TestReplayCrashManySenders: with many senders interleaved, reordered,
// duplicated and restarting, no frame accepted before any of a series of
// crashes of the receiver is accepted after it, and each sender is heard
// again once past its reservation.
func TestReplayCrashManySenders(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	const senders = 64
	path := filepath.Join(t.TempDir(), "replay-marks")
	type frame struct {
		sender       int
		epoch, count uint64
	}
	var accepted []frame
	epoch := make([]uint64, senders)
	count := make([]uint64, senders)
	for i := range epoch {
		epoch[i] = epoch1
	}
	now := time.Unix(0, 0)
	open := func() *seal.Replay {
		es, err := seal.OpenEpochFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r := seal.NewReplay(es)
		r.SetClock(func() time.Time { return now })
		return r
	}
	r := open()
	for crash := range 5 {
		var pending []frame // sent, not yet delivered: delivered out of order
		for range 2000 + rng.IntN(3000) {
			now = now.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
			i := rng.IntN(senders)
			if rng.IntN(500) == 0 { // the sender restarts
				epoch[i], count[i] = epoch[i]+1+uint64(rng.IntN(100)), 0
			}
			count[i]++
			pending = append(pending, frame{i, epoch[i], count[i]})
			for len(pending) > 0 && rng.IntN(3) > 0 {
				k := rng.IntN(len(pending))
				f := pending[k]
				if rng.IntN(10) > 0 { // else delivered again later
					pending = append(pending[:k], pending[k+1:]...)
				}
				if r.Check(senderID(f.sender), f.epoch, f.count) == nil {
					accepted = append(accepted, f)
				}
			}
		}
		// Crash: no Close; a new filter on what the file holds.
		r = open()
		for _, f := range accepted {
			if err := r.Check(senderID(f.sender), f.epoch, f.count); !errors.Is(err, seal.ErrReplay) {
				t.Fatalf("crash %d: frame %+v accepted before the crash accepted again: %v", crash, f, err)
			}
		}
		es, _ := seal.OpenEpochFile(path)
		for i := range senders {
			if m := es.Load(senderID(i)); m.Epoch == epoch[i] && m.Counter >= count[i] {
				count[i] = m.Counter // its frames up to the reservation are lost
			}
			count[i]++
			f := frame{i, epoch[i], count[i]}
			if err := r.Check(senderID(i), f.epoch, f.count); err != nil {
				t.Fatalf("crash %d: sender %d past its reservation refused: %v", crash, i, err)
			}
			accepted = append(accepted, f)
		}
	}
}
