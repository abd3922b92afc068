package seal

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// WindowSize is how far behind a sender's highest counter a frame may
// arrive and still be accepted (once): reordering within it is normal.
const WindowSize = 1024

// Reservation sizes (see Replay): while senders keep sending, their marks
// are saved, all in one write, about once per saveEvery; after a crash of
// this node, at most the frames reserved but not yet received are
// refused — minBlock of an idle sender, a couple of seconds' worth of a
// busy one.
const (
	minBlock  = 8
	maxBlock  = MaxReservation
	saveEvery = 2 * time.Second
)

// MaxReservation is the most a receiver's saved counter of a sender
// exceeds the highest counter it accepted from it. A sender that skips its
// counter by MaxReservation is past any reservation a receiver holds: what
// a node does on hearing a peer's new boot, so that a receiver restarted
// after a crash hears it at once rather than refusing its frames up to
// the reservation (see Replay).
const MaxReservation = 1 << 24

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
// daemon backs it with a file (EpochFile). Replay calls it with its lock
// held, on the receive path: SaveAll should be one small durable write
// however many marks it carries, and must be durable when it returns nil.
type EpochStore interface {
	// Load returns the sender's last saved mark; the zero Mark if none.
	// An implementation loads everything when it opens, so Load cannot
	// fail.
	Load(sender store.NodeID) Mark
	// SaveAll durably records every mark in marks, replacing each
	// sender's previous one, all or none: on error no mark changed. It
	// must not keep marks, which the caller reuses.
	SaveAll(marks map[store.NodeID]Mark) error
}

// Replay refuses authenticated datagrams seen before. Per sender it keeps
// the highest boot epoch seen — a frame of an older epoch is a replay —
// and, within that epoch, a window of the last WindowSize counters: a
// counter already seen, or below the window, is a replay; one within it
// not yet seen is accepted, so reordering is harmless. Counters start at
// 1; 0 is never accepted.
//
// Restarts of this node. The window lives in memory, so what survives a
// restart is the Mark. The invariant: at every instant a frame is
// accepted, the saved counter of its sender (in its epoch) is at least
// every counter accepted from that sender. So before accepting a counter
// above its sender's saved one, Replay saves a reservation (epoch,
// counter + block). That write renews, in the same single SaveAll, the
// reservation (epoch, top + block) of every other sender heard since its
// own last one — a write costs the same for one mark or all, and renewing
// them all keeps the writes to about one per saveEvery however many
// senders are busy, instead of one per sender. A renewal never goes below
// a sender's top, so it keeps the invariant; a failed write changes
// nothing, and the frame is refused (fail closed).
//
// A new Replay refuses, in the saved epoch, every counter up to the saved
// one: nothing accepted before the restart is accepted again, crash or
// not. Close saves the exact highest counters, so after a clean stop no
// fresh frame is refused either; after a crash, a sender's frames up to
// its reservation are refused (block adapts per sender so that its
// reservation lasts between saveEvery and a few times that: minBlock
// frames of an idle sender, a couple of seconds of a busy one). Senders
// bound that in time: a node that hears a peer's new boot skips its own
// counter by MaxReservation, past any reservation the peer can hold, so a
// restarted receiver refuses its frames only until its first HELLO has
// reached them.
//
// A Replay is safe for concurrent use. Check must only be given frames
// that authenticated: it moves the window.
type Replay struct {
	es  EpochStore
	now func() time.Time

	mu      sync.Mutex
	senders map[store.NodeID]*window
	batch   map[store.NodeID]Mark // scratch for SaveAll
	tick    uint64                // for least-recently-used eviction
}

// window is one sender's state.
type window struct {
	epoch    uint64
	floor    uint64 // counters <= floor are refused: saved before a restart, or 0
	top      uint64 // highest counter accepted in epoch (or floor)
	saved    uint64 // the Counter of the saved mark: >= every accepted counter
	base     uint64 // top when saved was last reserved: top > base means heard since
	block    uint64 // the next reservation's size
	lastSave time.Time
	used     uint64
	bits     [WindowSize / 64]uint64 // bit c%WindowSize: counter c seen, for c in (top-WindowSize, top]
}

// NewReplay returns a replay filter persisting marks in es.
func NewReplay(es EpochStore) *Replay {
	return &Replay{es: es, now: time.Now, senders: map[store.NodeID]*window{}, batch: map[store.NodeID]Mark{}}
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

// reserve saves sender's reservation (epoch, counter + block) before
// counter is accepted, and in the same write renews every other sender
// heard since its last reservation to (its epoch, its top + its block),
// adapting each block on the way. On error nothing is saved or renewed.
func (r *Replay) reserve(sender store.NodeID, w *window, epoch, counter uint64) error {
	now := r.now()
	if epoch == w.epoch {
		w.adapt(counter-w.base, now.Sub(w.lastSave))
	}
	clear(r.batch)
	r.batch[sender] = Mark{Epoch: epoch, Counter: plus(counter, w.block)}
	for id, o := range r.senders {
		if o == w || o.top <= o.base {
			continue
		}
		o.adapt(o.top-o.base, now.Sub(o.lastSave))
		r.batch[id] = Mark{Epoch: o.epoch, Counter: plus(o.top, o.block)}
	}
	if err := r.es.SaveAll(r.batch); err != nil {
		return fmt.Errorf("%w: cannot save the mark of sender %s, so the frame cannot be shown fresh: %w", ErrReplay, sender, err)
	}
	for id, m := range r.batch {
		o := r.senders[id]
		o.saved, o.base, o.lastSave = m.Counter, o.top, now
	}
	w.base = counter // about to be accepted: the new top
	return nil
}

// adapt sizes w's next reservation so that it lasts between saveEvery
// and 4×saveEvery at the rate w used its last one: used counters in
// since. It grows only a sender that used at least half its reservation
// (one that asks for this save used all of it), so that a frame or two
// just before a save does not count as a rate.
func (w *window) adapt(used uint64, since time.Duration) {
	if w.lastSave.IsZero() {
		return
	}
	lasts := float64(w.block) * since.Seconds() // × used: how long the block lasts
	switch per := saveEvery.Seconds() * float64(used); {
	case 2*used >= w.block && lasts < per:
		w.block = min(w.block*2, maxBlock)
	case lasts > 4*per:
		w.block = max(w.block/2, minBlock)
	}
}

// plus is c + n, or the largest counter if that overflows.
func plus(c, n uint64) uint64 {
	if c+n < c {
		return math.MaxUint64
	}
	return c + n
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
	w := &window{epoch: m.Epoch, floor: m.Counter, top: m.Counter, saved: m.Counter, base: m.Counter, block: minBlock, used: r.tick}
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
	// exact one only spares fresh frames a refusal when it comes back, so
	// an error is harmless here.
	_ = r.flush(func(id store.NodeID) bool { return id == victim })
	delete(r.senders, victim)
}

// flush saves, in one write, the exact top of every sender that which
// selects and whose saved counter is above it. r.mu is held.
func (r *Replay) flush(which func(store.NodeID) bool) error {
	clear(r.batch)
	for id, w := range r.senders {
		if w.saved != w.top && which(id) {
			r.batch[id] = Mark{Epoch: w.epoch, Counter: w.top}
		}
	}
	if len(r.batch) == 0 {
		return nil
	}
	if err := r.es.SaveAll(r.batch); err != nil {
		return fmt.Errorf("saving the marks of %d senders: %w", len(r.batch), err)
	}
	for id := range r.batch {
		w := r.senders[id]
		w.saved, w.base = w.top, w.top
	}
	return nil
}

// Flush saves every sender's exact highest counter in place of its
// reservation, in one write, so that a new Replay on the same store
// refuses exactly what this one accepted. Checks may continue afterwards
// (they reserve again).
func (r *Replay) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flush(func(store.NodeID) bool { return true })
}

// Close flushes (see Flush). Call it on a clean stop, after the last
// frame was opened.
func (r *Replay) Close() error { return r.Flush() }
