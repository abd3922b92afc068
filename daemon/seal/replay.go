package seal

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// WindowSize is how far behind a sender's highest counter a frame may
// arrive and still be accepted (once): reordering within it is normal.
const WindowSize = 1024

// Reservation sizes (see Replay): a sender's mark is saved at most about
// once per saveEvery while it keeps sending, and, after a crash of this
// node, at most the frames reserved but not yet received are refused —
// minBlock of an idle sender, a couple of seconds' worth of a busy one.
const (
	minBlock  = 8
	maxBlock  = 1 << 24
	saveEvery = 2 * time.Second
)

// maxSenders bounds the windows kept in memory. An evicted sender's mark
// is saved first, so evicting it costs nothing but a Load when it is next
// heard.
const maxSenders = 4096

// Mark is what a receiver persists about one sender: its highest boot
// epoch seen, and a counter no accepted frame of that epoch exceeds.
type Mark struct {
	Epoch   uint64
	Counter uint64
}

// EpochStore persists senders' marks across restarts of the receiver. The
// daemon backs it with a file (EpochFile) or its store's meta bucket.
// Replay calls it with its lock held, on the receive path: Save should be
// one small durable write, and must be durable when it returns nil.
type EpochStore interface {
	// Load returns the sender's last saved mark; the zero Mark if none.
	// An implementation loads everything when it opens, so Load cannot
	// fail.
	Load(sender store.NodeID) Mark
	// Save durably records the sender's mark, replacing the previous one.
	Save(sender store.NodeID, m Mark) error
}

// Replay refuses authenticated datagrams seen before. Per sender it keeps
// the highest boot epoch seen — a frame of an older epoch is a replay —
// and, within that epoch, a window of the last WindowSize counters: a
// counter already seen, or below the window, is a replay; one within it
// not yet seen is accepted, so reordering is harmless. Counters start at
// 1; 0 is never accepted.
//
// Restarts of this node. The window lives in memory, so what survives a
// restart is the Mark: before accepting a counter above the last saved
// mark, Replay saves (epoch, counter + block) — a reservation — so the
// saved counter is always at least every counter accepted. A new Replay
// refuses, in the saved epoch, every counter up to the saved one: nothing
// accepted before the restart is accepted again, crash or not. Close
// saves the exact highest counters, so after a clean stop no fresh frame
// is refused either; after a crash, a sender's frames up to its
// reservation are refused (block adapts so that saves happen about once
// every saveEvery per sender: a few frames of an idle sender, a couple of
// seconds of a busy one).
//
// A Replay is safe for concurrent use. Check must only be given frames
// that authenticated: it moves the window.
type Replay struct {
	es  EpochStore
	now func() time.Time

	mu      sync.Mutex
	senders map[store.NodeID]*window
	tick    uint64 // for least-recently-used eviction
}

// window is one sender's state.
type window struct {
	epoch    uint64
	floor    uint64 // counters <= floor are refused: saved before a restart, or 0
	top      uint64 // highest counter accepted in epoch (or floor)
	saved    uint64 // the Counter of the saved mark: >= every accepted counter
	block    uint64 // the next reservation's size
	lastSave time.Time
	used     uint64
	bits     [WindowSize / 64]uint64 // bit c%WindowSize: counter c seen, for c in (top-WindowSize, top]
}

// NewReplay returns a replay filter persisting marks in es.
func NewReplay(es EpochStore) *Replay {
	return &Replay{es: es, now: time.Now, senders: map[store.NodeID]*window{}}
}

// Check accepts the frame (sender, epoch, counter) if it was not seen
// before, remembering it, or returns an error wrapping ErrReplay. It
// blocks when it must save the sender's mark first; if that fails the
// frame is refused (fail closed), with an error wrapping ErrReplay and
// the store's.
func (r *Replay) Check(sender store.NodeID, epoch, counter uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.window(sender)
	switch {
	case epoch < w.epoch:
		return errOld
	case epoch > w.epoch:
		// The sender restarted: its old epoch is over. Reserve first, so
		// a failed save changes nothing.
		if err := r.reserve(sender, w, epoch, counter); err != nil {
			return err
		}
		w.epoch, w.floor, w.top, w.bits = epoch, 0, 0, [WindowSize / 64]uint64{}
		if counter == 0 {
			return errBelow
		}
		w.advance(counter)
		return nil
	case counter <= w.floor:
		return errBelow
	case counter > w.top:
		if counter > w.saved {
			if err := r.reserve(sender, w, epoch, counter); err != nil {
				return err
			}
		}
		w.advance(counter)
		return nil
	case w.top-counter >= WindowSize:
		return errBelow
	}
	i, bit := counter/64%(WindowSize/64), uint64(1)<<(counter%64)
	if w.bits[i]&bit != 0 {
		return errSeen
	}
	w.bits[i] |= bit
	return nil
}

// advance makes c, above top, the new top: clears the bits of the
// counters skipped over, which are now within the window and unseen.
func (w *window) advance(c uint64) {
	if c-w.top >= WindowSize {
		w.bits = [WindowSize / 64]uint64{}
	} else {
		for n := w.top + 1; n <= c; {
			if n%64 == 0 && c-n >= 63 {
				w.bits[n/64%(WindowSize/64)] = 0
				n += 64
				continue
			}
			w.bits[n/64%(WindowSize/64)] &^= 1 << (n % 64)
			n++
		}
	}
	w.top = c
	w.bits[c/64%(WindowSize/64)] |= 1 << (c % 64)
}

// reserve saves (epoch, counter + block) for sender, adapting block so
// that a busy sender is saved about once per saveEvery.
func (r *Replay) reserve(sender store.NodeID, w *window, epoch, counter uint64) error {
	now := r.now()
	if !w.lastSave.IsZero() {
		switch since := now.Sub(w.lastSave); {
		case since < saveEvery:
			w.block = min(w.block*2, maxBlock)
		case since > 4*saveEvery:
			w.block = max(w.block/2, minBlock)
		}
	}
	m := Mark{Epoch: epoch, Counter: counter + w.block}
	if m.Counter < counter {
		m.Counter = math.MaxUint64
	}
	if err := r.es.Save(sender, m); err != nil {
		return fmt.Errorf("%w: cannot save the mark of sender %s, so the frame cannot be shown fresh: %w", ErrReplay, sender, err)
	}
	w.saved, w.lastSave = m.Counter, now
	return nil
}

// window returns sender's window, loading its mark on first sight and
// evicting the least recently used window when full. r.mu is held.
func (r *Replay) window(sender store.NodeID) *window {
	r.tick++
	if w, ok := r.senders[sender]; ok {
		w.used = r.tick
		return w
	}
	if len(r.senders) >= maxSenders {
		r.evictOldest()
	}
	m := r.es.Load(sender)
	w := &window{epoch: m.Epoch, floor: m.Counter, top: m.Counter, saved: m.Counter, block: minBlock, used: r.tick}
	r.senders[sender] = w
	return w
}

func (r *Replay) evictOldest() {
	var victim store.NodeID
	var oldest *window
	for id, w := range r.senders {
		if oldest == nil || w.used < oldest.used {
			victim, oldest = id, w
		}
	}
	// The saved mark already covers every accepted counter; saving the
	// exact one only spares fresh frames a refusal when it comes back.
	r.flushOne(victim, oldest)
	delete(r.senders, victim)
}

func (r *Replay) flushOne(sender store.NodeID, w *window) error {
	if w.saved == w.top {
		return nil
	}
	if err := r.es.Save(sender, Mark{Epoch: w.epoch, Counter: w.top}); err != nil {
		return fmt.Errorf("saving the mark of sender %s: %w", sender, err)
	}
	w.saved = w.top
	return nil
}

// Flush saves every sender's exact highest counter in place of its
// reservation, so that a new Replay on the same store refuses exactly what
// this one accepted. Checks may continue afterwards (they reserve again).
func (r *Replay) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for id, w := range r.senders {
		if err := r.flushOne(id, w); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close flushes (see Flush). Call it on a clean stop, after the last
// frame was opened.
func (r *Replay) Close() error { return r.Flush() }
